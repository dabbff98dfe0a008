"""The Triton top-n kernel (kernels/nsa/topn.py) against its torch twin and torch.topk.

Without a GPU the kernel runs in Triton's interpreter (see tests/conftest.py). Score rows are
built the way select.slc_scores writes them: block 0 and the two local blocks +inf, blocks
after the query's own -inf, padding past a shorter sequence's last block -inf.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch
import triton.language as tl

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nsa_assist.kernels.nsa import NSAConfig, topn
from nsa_assist.kernels.nsa.compress import compress_mean
from nsa_assist.kernels.nsa.select import slc_scores, top_n, top_n_torch
from nsa_assist.kernels.nsa.topn import _tiles, top_n_blocks, top_n_blocks_torch
from nsa_assist.kernels.nsa.varlen import prefill_meta
from nsa_assist.kernels.reference import select_blocks_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INF = float("inf")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def packed_scores(lengths, H_kv, slc_block, gen, levels=0):
    """Scores [N, H_kv, N_slc] of packed sequences as slc_scores leaves them.

    Finite scores are distinct; levels > 0 rounds them to that many values, so most tie.
    """
    NS = max(-(-n // slc_block) for n in lengths)
    rows = []
    for n in lengths:
        t = torch.arange(n)[:, None, None]
        j = torch.arange(NS)[None, None, :]
        cur = t // slc_block
        size = n * H_kv * NS
        s = torch.randperm(size, generator=gen).view(n, H_kv, NS).float() / size  # distinct
        if levels:
            s = (s * levels).floor()
        s = s.masked_fill((j == 0) | (j == cur) | (j == cur - 1), INF)
        rows.append(s.masked_fill(j > cur, -INF))
    return torch.cat(rows).to(DEVICE)


# the register kernel's two ways: Triton's tl.topk (where it exists) and n max rounds
REGISTER_WAYS = [(True, True), (True, False)] if hasattr(tl, "topk") else [(True, False)]
# the interpreter runs tl.topk slowly (0.1 s a row of 38 blocks, 2-3 s at 1024+): on the
# CPU the sort way sees this many rows of each table, spread over it (all of them on a GPU)
INTERPRETED_SORT_ROWS = 2


def _check_twin(scores, n):
    """Every kernel (the tournament, the one-row-in-registers one by sort and by rounds)
    equals the twin, run on the CPU: on CUDA torch.sort puts a NaN with its sign bit set
    last, not first."""
    want = top_n_blocks_torch(scores.cpu(), n)
    sort_default = topn.REGISTER_SORT
    try:
        for in_registers, sort in [(False, False), *REGISTER_WAYS]:
            topn.REGISTER_SORT = sort
            x, w = scores, want
            if sort and DEVICE == "cpu":
                x, w = scores.flatten(0, -2), want.flatten(0, -2)
                pick = torch.linspace(0, x.shape[0] - 1, INTERPRETED_SORT_ROWS).long().unique()
                x, w = x[pick], w[pick]
            counts = torch.full(x.shape[:-1], -7, device=x.device, dtype=torch.int32)
            got = top_n_blocks(x, n, in_registers=in_registers, counts=counts)
            assert got.dtype == torch.int32 and got.shape == (*x.shape[:-1], n)
            assert torch.equal(got.cpu(), w), f"in_registers={in_registers} sort={sort}"
            assert torch.equal(counts.cpu(), (w >= 0).sum(-1, dtype=torch.int32))
    finally:
        topn.REGISTER_SORT = sort_default
    return want.to(scores.device)  # what every kernel was just checked to give


# (lengths, slc_block, n): N_slc from 1 to 40 blocks, none a power of two but one
CASES = [
    ([37, 5, 22], 4, 3),  # the kernels' small test config; a sequence shorter than a block
    ([150], 4, 16),  # 38 blocks, n = 16 (the paper's n)
    ([150, 40, 1], 4, 32),  # n = 32 (64k with a dense-trained model) > every row's blocks
    ([100, 63, 64, 65], 16, 5),  # rows on and around block edges; n not a power of two
    ([3], 64, 16),  # a short sequence: one partial block
]


@pytest.mark.parametrize("lengths,slc_block,n", CASES, ids=lambda x: str(x))
@pytest.mark.parametrize("levels", [0, 3], ids=["random", "ties"])
def test_matches_torch_twin(lengths, slc_block, n, levels, poisoned):
    """Packed batches, rows with fewer visible blocks than n, heavy ties: element for element."""
    scores = packed_scores(lengths, 2, slc_block, _gen(sum(lengths) + levels), levels)
    idx = _check_twin(scores, n)
    valid = idx >= 0
    # valid entries first, then -1 only; every visible block taken when fewer than n exist
    assert torch.equal(valid, valid.cummin(-1).values)
    visible = torch.isfinite(scores) | (scores == INF)
    assert torch.equal(valid.sum(-1), visible.sum(-1).clamp(max=n))


def test_longer_rows_than_one_program_step():
    """N_slc = 1025 .. 3000: several groups and sweep steps, odd tails past the last group."""
    gen = _gen(7)
    for NS in (1025, 3000):
        scores = torch.rand(5, 2, NS, generator=gen).to(DEVICE)
        scores[0, 0, NS - 1] = INF  # the very last block forced
        scores[1, :, 10:] = -INF
        _, NG, KS, CS = _tiles(NS)
        assert KS > 1 and NG * KS * CS >= NS
        _check_twin(scores, 16)
        _check_twin(scores, 33)


def test_ties_go_to_the_lower_block():
    s = torch.tensor([[2.0, 5.0, 5.0, 1.0, 5.0, 2.0, 5.0, 2.0]], device=DEVICE)
    assert top_n_blocks(s, 6).tolist() == [[1, 2, 4, 6, 0, 5]]
    flat = torch.zeros(3, 300, device=DEVICE)
    flat[:, [7, 250]] = INF
    assert top_n_blocks(flat, 5).tolist() == [[7, 250, 0, 1, 2]] * 3


def test_minus_inf_nan_and_signed_zero():
    """-inf never selected; NaN of either sign above +inf (torch's order); -0.0 == +0.0."""
    s = torch.tensor(
        [[-INF, 0.0, -0.0, float("nan"), INF, -1.0, -float("nan"), 3.0],
         [-INF] * 8,
         [-0.0, 0.0, -0.0, -2.0, -INF, -INF, 1e-30, -1e-30]],
        device=DEVICE,
    )  # fmt: skip
    got = _check_twin(s, 8)
    assert got.tolist() == [
        [3, 6, 4, 7, 1, 2, 5, -1],
        [-1] * 8,
        [6, 0, 1, 2, 7, 3, -1, -1],
    ]


def test_same_blocks_as_torch_topk_without_ties():
    """Distinct finite scores: the former torch.topk top_n, order included after the forced."""
    cfg = NSAConfig(cmp_block=8, cmp_stride=4, slc_block=4, n_selected=16)
    scores = packed_scores([150, 29], 3, cfg.slc_block, _gen(3))
    idx = top_n(scores, cfg)
    assert torch.equal(idx.cpu(), top_n_torch(scores, cfg).cpu())
    top, ref = scores.topk(16, dim=-1)
    ref = ref.masked_fill(top == -INF, -1).int()
    # the three +inf blocks lead in block order (topk's order among them is unspecified)
    assert torch.equal(idx.sort(-1).values, ref.sort(-1).values)
    assert torch.equal(idx[..., 3:], ref[..., 3:])


def test_scores_kernel_then_top_n_equals_reference_selection():
    """slc_scores -> top_n on a packed batch == the reference's forcing + top-n (as sets)."""
    cfg = NSAConfig(cmp_block=8, cmp_stride=4, slc_block=16, n_selected=4)
    lengths, H, H_kv, D = [70, 9, 33], 4, 2, 16
    gen = _gen(11)
    cu = [0, 70, 79, 112]
    q = torch.randn(sum(lengths), H, D, generator=gen).to(DEVICE)
    k = torch.randn(sum(lengths), H_kv, D, generator=gen).to(DEVICE)
    kc = compress_mean(k, cu, cfg)
    meta = prefill_meta(cu, cfg, DEVICE)
    scale = D**-0.5
    # the compressed log-sum-exp, per sequence, as the compressed branch returns it
    lse, c0 = [], 0
    for a, b in itertools.pairwise(cu):
        n_c = cfg.num_compressed(b - a)
        s = torch.einsum("thd,chd->htc", q[a:b], kc[c0 : c0 + n_c].repeat_interleave(2, 1))
        t = torch.arange(b - a, device=DEVICE)[:, None]
        ends = torch.arange(n_c, device=DEVICE) * cfg.cmp_stride + cfg.cmp_block - 1
        lse.append(torch.logsumexp((s * scale).masked_fill(ends > t, -INF), -1).T)
        c0 += n_c
    scores = slc_scores(q, kc, torch.cat(lse).contiguous(), meta, cfg, scale)
    idx = top_n(scores, cfg)
    assert torch.equal(idx.cpu(), top_n_torch(scores, cfg).cpu())
    for a, b in itertools.pairwise(cu):
        part = scores[a:b, :, : cfg.num_slc_blocks(b - a)].nan_to_num(posinf=0.0, neginf=0.0)
        t = torch.arange(b - a, device=DEVICE)
        want = select_blocks_reference(part.permute(1, 0, 2), t, cfg)
        assert torch.equal(idx[a:b].sort(-1).values.cpu(), want.sort(-1).values.int().cpu())


def test_empty_inputs():
    assert top_n_blocks(torch.zeros(0, 2, 7, device=DEVICE), 4).shape == (0, 2, 4)
    assert top_n_blocks(torch.zeros(3, 2, 0, device=DEVICE), 4).tolist() == [[[-1] * 4] * 2] * 3
