"""Triton NSA kernels (prefill, forward and backward) against the plain PyTorch reference.

Without a GPU the kernels run in Triton's interpreter (float32, small shapes): tests/conftest.py
turns TRITON_INTERPRET on before anything imports Triton; setting it here as well keeps this
file runnable alone.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nsa_assist.kernels.errors import KernelsUserError
from nsa_assist.kernels.nsa import (
    KernelTuning,
    NSAAttention,
    NSAConfig,
    nsa_attention,
)
from nsa_assist.kernels.nsa import attention as nsa_attention_mod
from nsa_assist.kernels.nsa import select as nsa_select_mod
from nsa_assist.kernels.nsa import slc_by_block as by_block_mod
from nsa_assist.kernels.nsa.attention import (
    MODE_CMP,
    attn_dkdv,
    attn_dq,
    attn_fwd,
    head_parts,
    slc_step_tiles,
)
from nsa_assist.kernels.nsa.combine import merge_splits_torch
from nsa_assist.kernels.nsa.compress import compress_mean
from nsa_assist.kernels.nsa.select import slc_scores
from nsa_assist.kernels.nsa.varlen import cmp_cu_seqlens, prefill_meta
from nsa_assist.kernels.reference import nsa_reference, overlap_matrix

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# the interpreter multiplies fp32 exactly; on a GPU tl.dot takes fp32 as TF32 (10-bit mantissa)
TOL = 1e-3 if DEVICE == "cpu" else 1e-2
SMALL = dict(cmp_block=8, cmp_stride=4, slc_block=16, window=16)
# (G, H_kv): every group size the issue names; lengths below are not multiples of any block
GROUPS = [(1, 3), (2, 2), (3, 1), (6, 2), (7, 1), (16, 1)]
LENGTHS = [37, 5, 22]  # 5 < l, 22 < 2 l'; none a multiple of l, d or l'
# bigger selection tiles than the GPU default (fewer interpreted programs, same code paths);
# one query step per dK/dV program so the split, atomically added path runs; Dk padded
# (split_head_dim has its own tests below)
TEST_TUNING = KernelTuning(
    block_m_cmp=64, block_m_slc=64, block_m_win=64, block_n=32, dkdv_query_steps=2,
    split_head_dim=False,
)  # fmt: skip


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert not torch.isnan(a).any(), "NaN in kernel result"
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _packed(lengths, H, H_kv, Dk=16, Dv=8, seed=None):
    N = sum(lengths)
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    mk = lambda *s: torch.randn(*s, generator=gen).to(DEVICE).requires_grad_()
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    gates = torch.rand(N, H, 3, generator=gen).to(DEVICE).requires_grad_()
    return mk(N, H, Dk), mk(N, H_kv, Dk), mk(N, H_kv, Dv), gates, cu


def _case_id(case):
    G, H_kv = case
    return f"G{G}-Hkv{H_kv}"


@pytest.mark.parametrize("combine", ["gated", "union"])
@pytest.mark.parametrize("group", GROUPS, ids=_case_id)
def test_forward_and_grads_match_reference(group, combine, poisoned):
    _check_against_reference(group, combine, TEST_TUNING)


@pytest.mark.parametrize(
    "group,combine", [((16, 1), "gated"), ((3, 2), "union")], ids=["G16-gated", "G3-union"]
)
def test_selection_dkdv_gathering_several_tiles_per_step(group, combine, poisoned):
    """16-row selection tiles (the GPU default for G = 16): each dK/dV step gathers 4 tiles,
    whose rows come from different work-list entries (G = 3 leaves rows of each tile unused)."""
    tuning = replace(TEST_TUNING, block_m_slc=16)
    assert slc_step_tiles(group[0], tuning.block_m_slc) == 4
    _check_against_reference(group, combine, tuning)


# the selection branch's walks, forward x backward, against the defaults (forward by block
# for G < 16, backward by block always): G = 16 by block with the paper's split Dk, G = 6 / 7
# by query tile, mixed walks (each builds the other's lists), and a step of more rows than G
# packs evenly (G = 3: 21 positions x 3 heads in 64 rows)
WALK_CASES = [
    ((16, 1), "gated", True, True, 192, 64),
    ((16, 1), "union", False, True, 16, 8),
    ((6, 2), "union", False, False, 16, 8),
    ((7, 1), "gated", True, False, 48, 16),
    ((3, 2), "gated", True, True, 16, 8),
]


def _walk_id(case) -> str:
    walk = lambda by_block: "block" if by_block else "query"
    return f"G{case[0][0]}-{case[1]}-{walk(case[2])}-{walk(case[3])}"


@pytest.fixture
def walks_run(monkeypatch) -> list[str]:
    """The by-block kernels the op calls, in order (each still runs)."""
    ran: list[str] = []
    for name in ("slc_fwd_by_block", "slc_bwd_by_block"):
        real = getattr(by_block_mod, name)
        monkeypatch.setattr(
            f"nsa_assist.kernels.nsa.op.{name}",
            lambda *a, real=real, name=name, **kw: ran.append(name) or real(*a, **kw),
        )
    return ran


@pytest.mark.parametrize(
    "group,combine,fwd_block,bwd_block,Dk,Dv", WALK_CASES, ids=map(_walk_id, WALK_CASES)
)
def test_selection_walked_by_block_or_by_query(group, combine, fwd_block, bwd_block, Dk, Dv,
                                               walks_run, poisoned):  # fmt: skip
    """Every walk of the selection branch, forward and backward, gives the reference's output
    and gradients, and the walks asked for are the ones that ran."""
    tuning = replace(
        TEST_TUNING, slc_by_block=fwd_block, slc_bwd_by_block=bwd_block, split_head_dim=Dk == 192
    )
    _check_against_reference(group, combine, tuning, Dk, Dv)
    assert walks_run == ["slc_fwd_by_block"] * fwd_block + ["slc_bwd_by_block"] * bwd_block


@pytest.mark.parametrize("level", [0, 1], ids=["own-step", "next-entries"])
def test_block_walk_with_and_without_prefetch(level, walks_run, monkeypatch):
    """Both loops of the by-block kernels (each step loading its own entries, the next
    step's entries loaded early), forward and backward, give the reference's results."""
    monkeypatch.setattr(by_block_mod, "PREFETCH_LEVEL", level)
    tuning = replace(TEST_TUNING, slc_by_block=True, slc_bwd_by_block=True)
    _check_against_reference((6, 2), "gated", tuning)
    assert walks_run == ["slc_fwd_by_block", "slc_bwd_by_block"]


def test_default_walks():
    walks = [KernelTuning().for_group(G) for G in (1, 6, 7, 15, 16)]
    assert [t.slc_by_block for t in walks] == [True, True, True, True, False]
    assert all(t.slc_bwd_by_block for t in walks)


@pytest.mark.parametrize("asked", [None, True], ids=["default", "asked-by-block"])
def test_block_walk_falls_back_where_its_partials_do_not_fit(asked, walks_run, monkeypatch):
    """With the walks left to the default, a device without room for the block walk's partials
    gets the query-tile walk, forward and backward, and the reference's results; a walk by
    block that the caller asked for is taken regardless."""
    asked_bytes = []
    monkeypatch.setattr(
        "nsa_assist.kernels.nsa.op.block_walk_fits",
        lambda nbytes, device: asked_bytes.append(nbytes) and False,
    )
    tuning = replace(TEST_TUNING, slc_by_block=asked, slc_bwd_by_block=asked)
    _check_against_reference((6, 2), "gated", tuning)
    if asked is None:
        assert walks_run == []
        N, H, n, Dk, Dv = sum(LENGTHS), 12, 3, 16, 8  # o_part + lse_part fp32; dq_part
        assert asked_bytes == [n * N * H * (Dv * 4 + 4), n * N * H * Dk * 4]
    else:
        assert walks_run == ["slc_fwd_by_block", "slc_bwd_by_block"] and asked_bytes == []


def test_merge_slots_skips_empty_slots():
    """The per-block partials merge like flash-decoding splits; a slot left -inf (a block
    not chosen) is never read, even when its o_part holds NaN."""
    gen = torch.Generator().manual_seed(5)
    n, N, H, Dv = 5, 7, 3, 24
    o_part = torch.randn(n, N, H, Dv, generator=gen).to(DEVICE)
    lse2 = (torch.randn(n, N, H, generator=gen) * 3).to(DEVICE)
    empty = torch.rand(n, N, H, generator=gen).to(DEVICE) < 0.4
    empty[:, 0, 0] = True  # a row that read nothing
    lse2 = lse2.masked_fill(empty, float("-inf"))
    o_part = o_part.masked_fill(empty[..., None], float("nan"))
    o, lse = by_block_mod.merge_slots(o_part, lse2)
    want_o, want_lse = merge_splits_torch(o_part.nan_to_num(), lse2 * 0.6931471805599453)
    assert torch.equal(lse[0, 0].cpu(), torch.tensor(float("-inf")))
    assert torch.equal(o[0, 0].cpu(), torch.zeros(Dv))
    torch.testing.assert_close(o, want_o, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, want_lse, rtol=1e-5, atol=1e-5)


# head dims that are not powers of two, split in two tiles (Dk = BD + BD2), with Dv != Dk:
# (G, H_kv), combine, Dk, Dv, selection rows (16: the gathered dK/dV path)
SPLIT_CASES = [
    ((2, 2), "gated", 48, 16, 64),  # 32 + 16
    ((6, 2), "union", 96, 32, 64),  # 64 + 32
    ((16, 1), "gated", 192, 64, 16),  # 128 + 64, the paper's Dk
    ((3, 1), "union", 80, 48, 64),  # 64 + 16
]


def test_head_parts():
    assert [head_parts(d, True) for d in (48, 80, 96, 160, 192)] == [
        (32, 16), (64, 16), (64, 32), (128, 32), (128, 64)
    ]  # fmt: skip
    # nothing to gain: powers of two, parts that pad back to the same width, tiny heads
    padded = {16: 16, 24: 32, 64: 64, 112: 128, 128: 128, 200: 256, 256: 256}
    for d, width in padded.items():
        assert head_parts(d, True) == head_parts(d, False) == (width, 0)
    assert head_parts(192, False) == (256, 0)


@pytest.fixture
def split_spy(monkeypatch):
    """Records (D, split, parts) of every head_parts call made by the kernels' launchers."""
    calls = []

    def spy(D, split):
        parts = head_parts(D, split)
        calls.append((D, split, parts))
        return parts

    monkeypatch.setattr(nsa_attention_mod, "head_parts", spy)
    monkeypatch.setattr(nsa_select_mod, "head_parts", spy)
    return calls


@pytest.mark.parametrize(
    "group,combine,Dk,Dv,block_m_slc",
    SPLIT_CASES,
    ids=[f"Dk{c[2]}-G{c[0][0]}" for c in SPLIT_CASES],
)
def test_split_head_dim_matches_reference(group, combine, Dk, Dv, block_m_slc, split_spy, poisoned):
    """split_head_dim=True: forward, indices and every gradient vs the reference, and every
    launch (each branch's fwd, dQ, dK/dV and the scores pass) really ran two Dk parts."""
    tuning = replace(TEST_TUNING, block_m_slc=block_m_slc, split_head_dim=True)
    _check_against_reference(group, combine, tuning, Dk, Dv)
    n_launches = 3 + 1 + (6 if combine == "gated" else 4)  # union: no compressed backward
    n_launches -= tuning.for_group(group[0]).slc_bwd_by_block  # its dQ and dK/dV: one launch
    assert len(split_spy) == n_launches
    assert all(d == Dk and split and parts[1] > 0 for d, split, parts in split_spy), split_spy


@pytest.mark.parametrize("combine", ["gated", "union"])
def test_default_tuning_on_wide_heads(combine, monkeypatch):
    """KernelTuning() as the GPU runs it on the paper's 192 / 128 heads: split Dk, 128-row
    tiles, and attention._plan's keys per step and launch options (32 keys for the backward
    on rows over 256 columns, 64 for the forward)."""
    tuning = KernelTuning().for_group(16)
    assert tuning.split_head_dim and tuning.block_n == 0
    plans = []
    real_plan = nsa_attention_mod._plan

    def spy(kind, *args):
        plans.append((kind, *real_plan(kind, *args)))
        return plans[-1][1:]

    monkeypatch.setattr(nsa_attention_mod, "_plan", spy)
    _check_against_reference((16, 1), combine, tuning, Dk=192, Dv=128)
    # compressed / window: 64 keys forward on 8 warps, 32 backward on 4; the selection forward
    # steps over its 16-key blocks (SMALL's l') on 4 warps (its backward walks by block)
    assert {(kind, bn, opts["num_warps"]) for kind, bn, opts in plans} == {
        ("fwd", 64, 8), ("dq", 32, 4), ("dkdv", 32, 4), ("fwd", 16, 4),
    }  # fmt: skip


def _check_against_reference(group, combine, tuning, Dk=16, Dv=8):
    G, H_kv = group
    cfg = NSAConfig(**SMALL, n_selected=3, combine=combine)
    q, k, v, gates, cu = _packed(LENGTHS, G * H_kv, H_kv, Dk, Dv)
    kc, vc = compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)
    o, idx = nsa_attention(q, k, v, kc, vc, cfg, gates, cu, tuning=tuning, return_indices=True)
    cu_c = torch.tensor(cmp_cu_seqlens(cu, cfg))
    ref, ref_idx = nsa_reference(
        q, k, v, kc, vc, cfg, gates, torch.tensor(cu), cu_c, return_indices=True
    )
    assert torch.equal(idx.sort(-1).values.cpu(), ref_idx.sort(-1).values.cpu().int())
    err = rel(o, ref)
    print(f"G{G} {combine} Dk{Dk}: output rel err {err:.2e}")
    assert err < TOL
    do = torch.randn_like(o)
    inputs = (q, k, v, gates) if combine == "gated" else (q, k, v)
    got = torch.autograd.grad(o, inputs, do)
    want = torch.autograd.grad(ref, inputs, do)
    for name, a, b in zip("qkvg", got, want, strict=False):
        err = rel(a, b)
        print(f"G{G} {combine} Dk{Dk}: d{name} rel err {err:.2e}")
        assert err < TOL, name


def test_batched_layout_equals_packed():
    cfg = NSAConfig(**SMALL, n_selected=4, combine="union")
    B, T, H, H_kv = 2, 37, 4, 2
    q, k, v, _, cu = _packed([T] * B, H, H_kv)
    kc, vc = compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)
    packed = nsa_attention(q, k, v, kc, vc, cfg, cu_seqlens=cu)
    n_c = cfg.num_compressed(T)
    batched = nsa_attention(
        q.view(B, T, H, -1), k.view(B, T, H_kv, -1), v.view(B, T, H_kv, -1),
        kc.view(B, n_c, H_kv, -1), vc.view(B, n_c, H_kv, -1), cfg,
    )  # fmt: skip
    torch.testing.assert_close(batched.flatten(0, 1), packed)


@pytest.mark.parametrize(
    "T,Dk,split_dk,G",
    [(61, 16, False, 3), (600, 16, False, 3), (61, 96, True, 3), (600, 48, True, 3),
     (600, 16, False, 1), (300, 16, False, 6), (300, 32, False, 7), (300, 16, False, 16)],
    ids=["T61", "T600", "T61-Dk96-split", "T600-Dk48-split", "G1", "G6", "G7", "G16"],
)  # fmt: skip
def test_scores_kernel_is_eq_8_to_10(T, Dk, split_dk, G):
    """Kernel block scores == reference probabilities @ overlap matrix, summed over the group.

    600 tokens span 38 selection blocks, more than one 16-block step, so the spill carried
    between steps is checked too; the group sizes cover a tile of one head (the sum skipped),
    heads that do not fill a power of two (6, 7: rows left over) and a one-position tile (16).
    """
    cfg = NSAConfig(**SMALL)
    H_kv = 2
    H = G * H_kv
    q, k, _, _, cu = _packed([T], H, H_kv, Dk)
    kc = compress_mean(k, cu, cfg).detach()
    q = q.detach()
    n_c = kc.shape[0]
    scale = Dk**-0.5
    s = torch.einsum("thd,chd->htc", q, kc.repeat_interleave(G, 1)) * scale
    t = torch.arange(T, device=DEVICE)
    ends = torch.arange(n_c, device=DEVICE) * cfg.cmp_stride + cfg.cmp_block - 1
    s = s.masked_fill(ends[None, None, :] > t[None, :, None], float("-inf"))
    lse = torch.logsumexp(s, -1)  # [H, T]
    p = torch.exp(s - lse.nan_to_num(neginf=0.0)[..., None]).nan_to_num()
    W = overlap_matrix(n_c, cfg.num_slc_blocks(T), cfg, DEVICE)
    want = (p @ W).view(H_kv, G, T, -1).sum(1).permute(1, 0, 2)  # [T, H_kv, N_slc]
    meta = prefill_meta(cu, cfg, DEVICE)
    got = slc_scores(q, kc, lse.T.contiguous(), meta, cfg, scale, split_dk=split_dk)
    finite = torch.isfinite(got)
    cur = (t // cfg.slc_block)[:, None, None]
    j = torch.arange(got.shape[-1], device=DEVICE)[None, None, :]
    expected = (j <= cur) & (j != 0) & (j != cur) & (j != cur - 1)
    assert torch.equal(finite, expected.expand_as(finite))
    assert rel(got[finite], want[finite]) < 1e-5


@pytest.mark.parametrize("G", [1, 6, 16])
def test_whole_compressed_chunks_skip_the_mask(G, monkeypatch):
    """The compressed branch's forward, dQ and dK/dV read the chunks of compressed tokens
    that every row of a tile sees whole without a mask; each result equals the fully masked
    loop's. 16-token chunks over 300 tokens give whole chunks (and, for dK/dV, whole query
    steps, shared out over programs of 3 steps), and the second sequence (77 tokens) ends
    inside a tile, so rows past its end are computed too."""
    cfg = NSAConfig(**SMALL)
    H_kv = 2
    q, k, v, _, cu = _packed([300, 77], G * H_kv, H_kv)
    q = q.detach()
    kc, vc = compress_mean(k, cu, cfg).detach(), compress_mean(v, cu, cfg).detach()
    meta = prefill_meta(cu, cfg, DEVICE)
    tiles = dict(block_m=64, block_n=16)
    o, _ = attn_fwd(q, kc, vc, meta, cfg, MODE_CMP, 0.25, **tiles)
    do = torch.randn_like(o[0])
    delta = (do * o[0]).sum(-1)

    def run():
        o, lse = attn_fwd(q, kc, vc, meta, cfg, MODE_CMP, 0.25, **tiles)
        dq = torch.zeros(q.shape, device=DEVICE)
        dk, dv = torch.zeros(kc.shape, device=DEVICE), torch.zeros(vc.shape, device=DEVICE)
        args = (q, kc, vc, do, lse[0], delta)
        attn_dq(*args, dq, meta, cfg, MODE_CMP, 0.25, **tiles)
        attn_dkdv(*args, dk, dv, meta, cfg, MODE_CMP, 0.25, query_steps=3, **tiles)
        return o, lse, dq, dk, dv

    whole = run()
    monkeypatch.setattr(nsa_attention_mod, "UNMASKED_FULL_CHUNKS", False)
    masked = run()
    assert torch.equal(torch.isinf(whole[1]), torch.isinf(masked[1]))
    for name, a, b in zip(("o", "lse", "dq", "dk", "dv"), whole, masked, strict=True):
        finite = torch.isfinite(b)
        assert rel(a[finite], b[finite]) < 1e-6, name


def test_module_with_mlp_compression_trains_end_to_end():
    cfg = NSAConfig(**SMALL, n_selected=3, compression="mlp")
    H, H_kv, Dk, Dv, width = 6, 2, 16, 8, 12
    torch.manual_seed(torch.seed() % 2**31)
    layer = NSAAttention(cfg, H, H_kv, Dk, Dv, gate_dim=width).to(DEVICE)
    with torch.no_grad():  # leave the zero init so the MLP path really contributes
        layer.k_phi.fc2.weight.normal_(0.0, 0.1)
        layer.v_phi.fc2.weight.normal_(0.0, 0.1)
    q, k, v, _, cu = _packed([45, 20], H, H_kv, Dk, Dv)
    x = torch.randn(65, width, device=DEVICE)
    do = torch.randn(65, H, Dv, device=DEVICE)
    params = [p for p in layer.parameters()]
    grads = {}
    for backend in ("triton", "reference"):
        o = layer(q, k, v, x, cu, backend=backend)
        grads[backend] = (o, torch.autograd.grad(o, [q, k, v, *params], do))
    assert rel(grads["triton"][0], grads["reference"][0]) < TOL
    for a, b in zip(grads["triton"][1], grads["reference"][1], strict=True):
        if b.norm() < 1e-5:  # e.g. φ_k's output bias: softmax ignores a shift of all keys
            assert (a - b).norm() < 1e-5
        else:
            assert rel(a, b) < TOL


def test_caller_mistakes_raise():
    cfg = NSAConfig(**SMALL)
    q, k, v, gates, cu = _packed([20], 17, 1)
    kc, vc = compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)
    with pytest.raises(KernelsUserError, match=r"1\.\.16"):
        nsa_attention(q, k, v, kc, vc, cfg, gates, cu)
    q, k, v, gates, cu = _packed([20], 4, 2)
    with pytest.raises(KernelsUserError, match="kc/vc"):
        nsa_attention(q, k, v, kc[:1], vc[:1], cfg, gates, cu)
    with pytest.raises(KernelsUserError, match="gates"):
        nsa_attention(q, k, v, *(compress_mean(x, cu, cfg) for x in (k, v)), cfg, None, cu)


def test_prefill_meta_is_reused_for_the_same_sequences():
    """A model's layers call the op with one cu_seqlens: they share a SeqMeta and what was
    derived from it, while other lengths or another compression get their own, correct one."""
    cfg = NSAConfig(**SMALL)
    first = prefill_meta([0, 37, 42], cfg, DEVICE)
    tiles = first.derived(("probe",), lambda: object())
    again = prefill_meta([0, 37, 42], cfg, DEVICE)
    assert again is first and again.derived(("probe",), lambda: None) is tiles
    other = prefill_meta([0, 37, 43], cfg, DEVICE)
    assert other is not first and other.k_lens == (37, 6)
    coarser = prefill_meta([0, 37, 42], replace(cfg, cmp_stride=8), DEVICE)
    assert coarser.c_lens == (4, 0) and first.c_lens == (8, 0)
    assert coarser.c_len.tolist() == [4, 0] and first.c_len.tolist() == [8, 0]


@pytest.mark.parametrize("slots", [False, True], ids=["tiles", "slots"])
@pytest.mark.parametrize("BT,tiles_per_step", [(1, 1), (2, 4)], ids=["BT1", "BT2-gather4"])
def test_slc_work_lists_every_reading_tile_once(BT, tiles_per_step, slots, monkeypatch):
    """slc_work's items, as the dK/dV kernel reads them, hold for each (sequence, KV head,
    block) exactly the tiles whose union has that block; long lists are cut into pieces of at
    most SLC_WORK_TILES x tiles_per_step; the padding items past the real ones are empty.
    With slots (the by-block kernels' lists), each entry is the flat index of the block in
    the union table, so it names its tile, KV head and slot."""
    monkeypatch.setattr(nsa_select_mod, "SLC_WORK_TILES", 2)  # so long lists are split
    cfg = NSAConfig(**SMALL, n_selected=3)
    lengths, H_kv, G = [37, 5, 70], 2, 16 // BT
    meta = prefill_meta([0, 37, 42, 112], cfg, DEVICE)
    gen = torch.Generator().manual_seed(3)
    rows = []  # each position picks n distinct blocks at or before its own, -1 padding
    for n in lengths:
        for t in range(n):
            cur = t // cfg.slc_block
            for _ in range(H_kv):
                picks = torch.randperm(cur + 1, generator=gen)[: cfg.n_selected].tolist()
                rows.append(picks + [-1] * (cfg.n_selected - len(picks)))
    idx = torch.tensor(rows, dtype=torch.int32).view(sum(lengths), H_kv, -1).to(DEVICE)
    sel = nsa_select_mod.build_selection(idx, meta, cfg, G, 16)
    assert sel.rows_per_tile == BT
    w_seq, w_blk, w_hkv, w_start, w_len, w_tiles = nsa_select_mod.slc_work(
        sel, meta, cfg, H_kv, tiles_per_step, slots=slots
    )
    if slots:  # decode each entry, checking it points at its item's block
        U = sel.ulist.shape[-1]
        entries = w_tiles.long()
        for i in range(w_seq.numel()):
            e = entries[int(w_start[i]) : int(w_start[i]) + int(w_len[i])]
            assert bool((e // U % H_kv == w_hkv[i]).all())
            assert bool((sel.ulist.flatten()[e] == w_blk[i]).all())
        w_tiles = (entries // (H_kv * U)).to(torch.int32)
    want = {}
    for tile in range(sel.tile_seq.numel()):
        for h in range(H_kv):
            for blk in sel.ulist[tile, h, : sel.ucount[tile, h]].tolist():
                key = (int(sel.tile_seq[tile]), h, blk)
                want.setdefault(key, []).append(tile)
    got = {}
    limit = 2 * tiles_per_step
    for i in range(w_seq.numel()):
        n = int(w_len[i])
        assert 0 <= n <= limit
        key = (int(w_seq[i]), int(w_hkv[i]), int(w_blk[i]))
        start = int(w_start[i])
        got.setdefault(key, []).extend(w_tiles[start : start + n].tolist())
    got = {key: sorted(tiles) for key, tiles in got.items() if tiles}
    assert got == {key: sorted(tiles) for key, tiles in want.items()}
    assert max(len(t) for t in want.values()) > limit  # some list really was cut
    real = int((w_len > 0).sum())
    assert bool((w_len[real:] == 0).all()), "real items come first, padding after"
