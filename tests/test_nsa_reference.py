"""The plain PyTorch NSA reference: each documented decision, checked against dense attention."""

from __future__ import annotations

import math

import pytest
import torch

from nsa_assist.kernels.errors import KernelsUserError
from nsa_assist.kernels.nsa.config import NSAConfig
from nsa_assist.kernels.reference import (
    compress_mean_reference,
    nsa_reference,
    overlap_matrix,
    select_blocks_reference,
)

SMALL = dict(cmp_block=8, cmp_stride=4, slc_block=16, window=16)


def _inputs(T: int, H: int, H_kv: int, Dk: int = 16, Dv: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(T, H, Dk, generator=g)
    k = torch.randn(T, H_kv, Dk, generator=g)
    v = torch.randn(T, H_kv, Dv, generator=g)
    return q, k, v


def _dense_causal(q, k, v):
    G = q.shape[1] // k.shape[1]
    kh, vh = k.repeat_interleave(G, 1), v.repeat_interleave(G, 1)
    s = torch.einsum("thd,shd->hts", q, kh) / math.sqrt(q.shape[-1])
    T = q.shape[0]
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("hts,shd->thd", s.softmax(-1), vh)


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_config_rejects_bad_values():
    with pytest.raises(KernelsUserError):
        NSAConfig(cmp_block=30, cmp_stride=16)
    with pytest.raises(KernelsUserError):
        NSAConfig(n_selected=2)
    with pytest.raises(KernelsUserError):
        NSAConfig(combine="sum")


def test_compressed_lengths():
    cfg = NSAConfig()
    assert [cfg.num_compressed(t) for t in (0, 31, 32, 47, 48, 100)] == [0, 0, 1, 1, 2, 5]


def test_mean_compression_is_block_mean():
    cfg = NSAConfig(**SMALL)
    x = torch.randn(37, 2, 5)
    kc = compress_mean_reference(x, cfg)
    assert kc.shape == (cfg.num_compressed(37), 2, 5)
    torch.testing.assert_close(kc[3], x[12:20].mean(0))


def test_overlap_matrix_weights_are_token_overlap():
    cfg = NSAConfig()  # l=32, d=16, l'=64
    W = overlap_matrix(11, 3, cfg)  # tokens 0..10 end inside the 3 blocks
    assert W[:, 1].tolist() == [0, 0, 0, 1, 2, 2, 2, 1, 0, 0, 0]
    assert torch.all(W.sum(1) == 2)  # every token fully inside the covered range


def test_selection_forces_first_and_local_blocks_and_never_future():
    cfg = NSAConfig(cmp_block=8, cmp_stride=4, slc_block=16, n_selected=4)
    t = torch.tensor([0, 20, 70, 130])
    scores = torch.rand(1, 4, 10)
    scores[0, :, 9] = 100.0  # a future block with a huge score is still never chosen
    idx = select_blocks_reference(scores, t, cfg)[:, 0]
    assert idx[0].tolist()[1:] == [-1, -1, -1] and idx[0, 0] == 0
    assert sorted(idx[1].tolist()) == [-1, -1, 0, 1]
    for row, tt in zip(idx[2:], t[2:], strict=True):
        cur = int(tt) // 16
        assert {0, cur, cur - 1} <= set(row.tolist())
        assert max(row.tolist()) <= cur


def test_selection_ties_go_to_the_lower_block():
    """Equal scores rank by block index (the Triton top-n does the same; torch.topk's order of
    ties is unspecified), forced blocks first in block order."""
    cfg = NSAConfig(cmp_block=8, cmp_stride=4, slc_block=16, n_selected=5)
    scores = torch.tensor([[[0.0, 1.0, 5.0, 5.0, 5.0, 2.0, 0.0, 0.0]]])  # t = 100: block 6
    for _ in range(5):  # the same answer every time, whatever the sort's internals
        idx = select_blocks_reference(scores, torch.tensor([100]), cfg)
        assert idx[0, 0].tolist() == [0, 5, 6, 2, 3]


@pytest.mark.parametrize("T", [5, 40, 77], ids=lambda t: f"T{t}")
def test_union_covering_everything_is_dense_causal(T):
    cfg = NSAConfig(**SMALL, n_selected=16, combine="union")
    q, k, v = _inputs(T, 6, 2)
    kc, vc = compress_mean_reference(k, cfg), compress_mean_reference(v, cfg)
    assert _rel(nsa_reference(q, k, v, kc, vc, cfg), _dense_causal(q, k, v)) < 1e-5


@pytest.mark.parametrize("combine", ["union", "gated"])
def test_window_covering_everything_is_dense_causal(combine):
    cfg = NSAConfig(cmp_block=8, cmp_stride=4, slc_block=16, window=64, combine=combine)
    q, k, v = _inputs(50, 4, 4)
    kc, vc = compress_mean_reference(k, cfg), compress_mean_reference(v, cfg)
    gates = torch.zeros(50, 4, 3)
    gates[..., 2] = 1.0
    o = nsa_reference(q, k, v, kc, vc, cfg, gates=gates)
    assert _rel(o, _dense_causal(q, k, v)) < 1e-5


def test_gated_is_sum_of_gated_branches():
    cfg = NSAConfig(**SMALL, n_selected=3)
    T = 70
    q, k, v = _inputs(T, 3, 1)
    kc, vc = compress_mean_reference(k, cfg), compress_mean_reference(v, cfg)
    basis = [torch.zeros(T, 3, 3) for _ in range(3)]
    for c, g in enumerate(basis):
        g[..., c] = 1.0
    parts = [nsa_reference(q, k, v, kc, vc, cfg, gates=g) for g in basis]
    gates = torch.rand(T, 3, 3)
    mixed = sum(gates[..., c : c + 1] * parts[c] for c in range(3))
    assert _rel(nsa_reference(q, k, v, kc, vc, cfg, gates=gates), mixed) < 1e-5
    # the compressed branch alone: query 6 sees no complete block yet, query 7 sees block 0
    assert torch.all(parts[0][:7] == 0)
    torch.testing.assert_close(parts[0][7], vc[0].repeat_interleave(3, 0))


@pytest.mark.parametrize("combine", ["union", "gated"])
def test_no_output_depends_on_the_future(combine):
    cfg = NSAConfig(**SMALL, n_selected=3, combine=combine)
    T, cut = 90, 41
    q, k, v = _inputs(T, 4, 2)
    gates = torch.rand(T, 4, 3)
    out = []
    for seed in (1, 2):
        k2, v2 = k.clone(), v.clone()
        k2[cut + 1 :] = torch.randn(
            T - cut - 1, 2, 16, generator=torch.Generator().manual_seed(seed)
        )
        v2[cut + 1 :] = torch.randn(
            T - cut - 1, 2, 8, generator=torch.Generator().manual_seed(seed)
        )
        kc, vc = compress_mean_reference(k2, cfg), compress_mean_reference(v2, cfg)
        out.append(nsa_reference(q, k2, v2, kc, vc, cfg, gates=gates))
    torch.testing.assert_close(out[0][: cut + 1], out[1][: cut + 1])
    assert not torch.allclose(out[0][cut + 1 :], out[1][cut + 1 :])


def test_union_selection_excludes_window_tokens():
    """Union == one softmax over (selected blocks ∪ window): built here from the indices."""
    cfg = NSAConfig(**SMALL, n_selected=3, combine="union")
    T, H, H_kv = 100, 6, 2
    q, k, v = _inputs(T, H, H_kv)
    kc, vc = compress_mean_reference(k, cfg), compress_mean_reference(v, cfg)
    o, idx = nsa_reference(q, k, v, kc, vc, cfg, return_indices=True)
    s = torch.arange(T)
    allowed = torch.zeros(H_kv, T, T, dtype=torch.bool)
    for t in range(T):
        for h in range(H_kv):
            blocks = [b for b in idx[t, h].tolist() if b >= 0]
            in_blocks = torch.isin(s // cfg.slc_block, torch.tensor(blocks))
            allowed[h, t] = (in_blocks | (s > t - cfg.window)) & (s <= t)
    G = H // H_kv
    sc = torch.einsum("thd,shd->hts", q, k.repeat_interleave(G, 1)) / 4.0
    sc = sc.masked_fill(~allowed.repeat_interleave(G, 0), float("-inf"))
    dense = torch.einsum("hts,shd->thd", sc.softmax(-1), v.repeat_interleave(G, 1))
    assert _rel(o, dense) < 1e-5


def test_packed_equals_separate_sequences():
    cfg = NSAConfig(**SMALL, n_selected=3)
    lens = [37, 5, 64]
    seqs = [_inputs(n, 6, 3, seed=i) for i, n in enumerate(lens)]
    q, k, v = (torch.cat(parts) for parts in zip(*seqs, strict=True))
    kcs = [compress_mean_reference(s[1], cfg) for s in seqs]
    vcs = [compress_mean_reference(s[2], cfg) for s in seqs]
    gates = torch.rand(sum(lens), 6, 3)
    cu = torch.tensor([0, 37, 42, 106])
    cu_c = torch.tensor([0, *torch.tensor([c.shape[0] for c in kcs]).cumsum(0).tolist()])
    packed = nsa_reference(
        q, k, v, torch.cat(kcs), torch.cat(vcs), cfg, gates=gates, cu_seqlens=cu,
        cu_seqlens_cmp=cu_c,
    )  # fmt: skip
    for i, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)):
        alone = nsa_reference(*seqs[i], kcs[i], vcs[i], cfg, gates=gates[a:b])
        torch.testing.assert_close(packed[a:b], alone)


def test_query_chunking_does_not_change_result():
    cfg = NSAConfig(**SMALL, n_selected=4, combine="union")
    q, k, v = _inputs(70, 2, 1)
    kc, vc = compress_mean_reference(k, cfg), compress_mean_reference(v, cfg)
    a = nsa_reference(q, k, v, kc, vc, cfg, query_chunk=7)
    b = nsa_reference(q, k, v, kc, vc, cfg, query_chunk=1000)
    torch.testing.assert_close(a, b)
