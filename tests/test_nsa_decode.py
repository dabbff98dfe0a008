"""NSA decode: one new token per sequence from KV + compressed-KV caches, vs the reference.

Runs in Triton's interpreter without a GPU (see tests/conftest.py).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nsa_assist.kernels.nsa import NSAConfig, nsa_attention, nsa_decode
from nsa_assist.kernels.nsa import attention as nsa_attention_mod
from nsa_assist.kernels.nsa import decode as nsa_decode_mod
from nsa_assist.kernels.nsa import select as nsa_select_mod
from nsa_assist.kernels.nsa.attention import MODE_CMP, attn_fwd
from nsa_assist.kernels.nsa.compress import compress_mean
from nsa_assist.kernels.nsa.decode import (
    completed_blocks,
    update_compressed_cache,
)
from nsa_assist.kernels.nsa.decode_scores import decode_scores
from nsa_assist.kernels.nsa.select import slc_scores
from nsa_assist.kernels.nsa.varlen import decode_meta
from nsa_assist.kernels.reference import nsa_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# the interpreter multiplies fp32 exactly; on a GPU tl.dot takes fp32 as TF32 (10-bit mantissa)
TOL = 1e-3 if DEVICE == "cpu" else 1e-2
SMALL = dict(cmp_block=8, cmp_stride=4, slc_block=16, window=16, n_selected=3)
LENGTHS = [70, 5, 33, 16]  # a long one, one shorter than l, one odd, one on a block edge


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert not torch.isnan(a).any(), "NaN in kernel result"
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _grow_caches(lengths, H_kv, Dk, Dv, cfg, S=80):
    """Caches filled token by token, as decoding would, with NaN beyond each length."""
    B = len(lengths)
    k_cache = torch.full((B, S, H_kv, Dk), float("nan"), device=DEVICE)
    v_cache = torch.full((B, S, H_kv, Dv), float("nan"), device=DEVICE)
    S_c = cfg.num_compressed(S)
    kc_cache = torch.full((B, S_c, H_kv, Dk), float("nan"), device=DEVICE)
    vc_cache = torch.full((B, S_c, H_kv, Dv), float("nan"), device=DEVICE)
    for step in range(1, max(lengths) + 1):
        now = [min(step, n) for n in lengths]
        for b, n in enumerate(now):
            if n == step:
                k_cache[b, n - 1] = torch.randn(H_kv, Dk, device=DEVICE)
                v_cache[b, n - 1] = torch.randn(H_kv, Dv, device=DEVICE)
        grown = [n if n == step else 1 for n in now]  # 1: completes nothing
        update_compressed_cache(k_cache, kc_cache, grown, cfg)
        update_compressed_cache(v_cache, vc_cache, grown, cfg)
    return k_cache, v_cache, kc_cache, vc_cache


def test_completed_blocks():
    cfg = NSAConfig(**SMALL)
    assert completed_blocks([7, 8, 11, 12, 16], cfg) == [(1, 0), (3, 1), (4, 2)]


def test_compressed_cache_equals_mean_of_prefix():
    cfg = NSAConfig(**SMALL)
    k_cache, _, kc_cache, _ = _grow_caches(LENGTHS, 2, 16, 8, cfg)
    for b, n in enumerate(LENGTHS):
        want = compress_mean(k_cache[b, :n], [0, n], cfg)
        torch.testing.assert_close(kc_cache[b, : want.shape[0]], want)
        assert torch.isnan(kc_cache[b, want.shape[0] :]).all()  # nothing written past the end


@pytest.mark.parametrize(
    "splits", [None, 3, (5, None, 2)], ids=["auto-splits", "3-splits", "per-branch-splits"]
)
@pytest.mark.parametrize("combine", ["gated", "union"])
@pytest.mark.parametrize("G,H_kv", [(1, 2), (6, 2), (16, 1)], ids=["G1", "G6", "G16"])
def test_decode_equals_reference_at_last_position(G, H_kv, combine, splits):
    _check_decode(G, H_kv, combine, splits)


@pytest.mark.parametrize("combine", ["gated", "union"])
def test_selected_and_window_passes_launched_apart(combine, monkeypatch):
    """The selected and window passes as two launches (decode.DECODE_FUSED_LOCAL off) give
    the same output as the one fused launch the step uses."""
    monkeypatch.setattr(nsa_decode_mod, "DECODE_FUSED_LOCAL", False)
    _check_decode(6, 2, combine, (None, 2, 3))


@pytest.mark.parametrize(
    "G,H_kv,combine,Dk,Dv",
    [(6, 2, "gated", 96, 32), (16, 1, "union", 48, 16), (1, 2, "gated", 192, 64)],
    ids=["G6-Dk96", "G16-Dk48-union", "G1-Dk192"],
)
def test_decode_with_split_head_dim_equals_reference(G, H_kv, combine, Dk, Dv, monkeypatch):
    """Dk not a power of two, tiled as two parts (32 + 16, 64 + 32, 128 + 64) in the branch
    launches (the scores pass reads the compressed pass's logits, not q or Kc)."""
    seen = []
    real = nsa_attention_mod.head_parts
    spy = lambda D, split: seen.append(real(D, split)) or seen[-1]
    monkeypatch.setattr(nsa_attention_mod, "head_parts", spy)
    monkeypatch.setattr(nsa_select_mod, "head_parts", spy)
    _check_decode(G, H_kv, combine, None, Dk, Dv, split_head_dim=True)
    # the compressed pass, and one launch for the selected and window passes
    assert len(seen) == 2 and all(bd2 > 0 for _, bd2 in seen), seen


def _check_decode(G, H_kv, combine, splits, Dk=16, Dv=8, split_head_dim=False):
    cfg = NSAConfig(**SMALL, combine=combine)
    H = G * H_kv
    k_cache, v_cache, kc_cache, vc_cache = _grow_caches(LENGTHS, H_kv, Dk, Dv, cfg)
    q = torch.randn(len(LENGTHS), H, Dk, device=DEVICE)
    gates = torch.rand(len(LENGTHS), H, 3, device=DEVICE)
    o = nsa_decode(
        q, k_cache, v_cache, kc_cache, vc_cache, LENGTHS, cfg, gates, splits=splits,
        split_head_dim=split_head_dim,
    )  # fmt: skip
    for b, n in enumerate(LENGTHS):
        qs = torch.randn(n, H, Dk, device=DEVICE)
        qs[-1] = q[b]
        g = torch.rand(n, H, 3, device=DEVICE)
        g[-1] = gates[b]
        kc = compress_mean(k_cache[b, :n], [0, n], cfg)
        vc = compress_mean(v_cache[b, :n], [0, n], cfg)
        ref = nsa_reference(qs, k_cache[b, :n], v_cache[b, :n], kc, vc, cfg, g)
        err = rel(o[b], ref[-1])
        print(f"G{G} {combine} Dk{Dk} sequence {b} (length {n}): rel err {err:.2e}")
        assert err < TOL, f"sequence {b} (length {n}): {err:.2e}"


def test_decode_equals_triton_prefill():
    cfg = NSAConfig(**SMALL, combine="union")
    k_cache, v_cache, kc_cache, vc_cache = _grow_caches([45], 2, 16, 8, cfg)
    q = torch.randn(45, 12, 16, device=DEVICE)
    k, v = k_cache[0, :45], v_cache[0, :45]
    n_c = cfg.num_compressed(45)
    prefill = nsa_attention(q, k, v, kc_cache[0, :n_c], vc_cache[0, :n_c], cfg)
    o = nsa_decode(q[-1:], k_cache, v_cache, kc_cache, vc_cache, [45], cfg)
    assert rel(o[0], prefill[-1]) < 1e-4


@pytest.mark.parametrize("G", [1, 6, 16])
@pytest.mark.parametrize("blocks_per_program", [2, 64], ids=["2-blocks", "all-blocks"])
def test_decode_scores_equal_the_prefill_scores_pass(G, blocks_per_program):
    """decode_scores (from the compressed pass's logits and split lse) == slc_scores (q.Kc
    again, from the merged lse), at every block of every sequence; logits the compressed
    pass did not write stay NaN, so reading one fails the test. Two blocks a program puts the
    Eq. 9 spill across program edges."""
    cfg, H_kv, Dk = NSAConfig(**SMALL), 2, 16
    k_cache, _, kc_cache, vc_cache = _grow_caches(LENGTHS, H_kv, Dk, 8, cfg)
    B, S, S_c = len(LENGTHS), k_cache.shape[1], kc_cache.shape[1]
    q = torch.randn(B, G * H_kv, Dk, device=DEVICE)
    meta = decode_meta(torch.tensor(LENGTHS, dtype=torch.int32, device=DEVICE), S, S_c, cfg)
    kc, vc = kc_cache.reshape(B * S_c, H_kv, Dk), vc_cache.reshape(B * S_c, H_kv, 8)
    logits = torch.full((B, G * H_kv, S_c), float("nan"), device=DEVICE)
    _, lse_part = attn_fwd(
        q, kc, vc, meta, cfg, MODE_CMP, 0.25, splits=3, block_m=16, with_output=False,
        logits=logits,
    )  # fmt: skip
    got = decode_scores(logits, lse_part, meta, cfg, H_kv, blocks_per_program)
    want = slc_scores(q, kc, torch.logsumexp(lse_part, 0), meta, cfg, 0.25)
    assert got.shape == want.shape == (B, H_kv, cfg.num_slc_blocks(S))
    assert not got.isnan().any()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
