"""The dense model's Triton kernels (kernels/dense) vs their PyTorch twins and the model's ops.

Runs in Triton's interpreter without a GPU (see tests/conftest.py), in float32; the GPU run
repeats the checks in bfloat16.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nsa_assist.kernels.dense import (
    add_rms_norm,
    gemv,
    gemv_supported,
    gqa_decode,
    rope_store,
    silu_mul,
)
from nsa_assist.kernels.dense.decode_attention import decode_splits
from nsa_assist.kernels.dense.reference import (
    add_rms_norm_reference,
    gqa_decode_reference,
    rope_store_reference,
    silu_mul_reference,
)
from nsa_assist.model.rope import apply_rope, rope_cos_sin

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.bfloat16] if DEVICE == "cuda" else [torch.float32]
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert not torch.isnan(a).any(), "NaN in kernel result"
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [96, 256])
@pytest.mark.parametrize("with_residual", [True, False], ids=["residual", "first-layer"])
def test_add_rms_norm_matches_reference(dtype, channels, with_residual):
    torch.manual_seed(0)
    x = torch.randn(2, 3, channels, device=DEVICE, dtype=dtype)
    residual = torch.randn_like(x) if with_residual else None
    weight = torch.rand(channels, device=DEVICE, dtype=dtype) + 0.5
    out, total = add_rms_norm(x, residual, weight, 1e-6)
    want_out, want_total = add_rms_norm_reference(x, residual, weight, 1e-6)
    assert out.shape == x.shape and total.shape == x.shape
    assert torch.equal(total, want_total)  # the residual stream is rounded exactly as eager
    assert rel(out, want_out) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul_matches_reference_across_blocks(dtype):
    torch.manual_seed(1)
    gate_up = torch.randn(3, 1, 2 * 1100, device=DEVICE, dtype=dtype)  # width spans 2 blocks
    out = silu_mul(gate_up)
    assert out.shape == (3, 1, 1100)
    assert rel(out, silu_mul_reference(gate_up)) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_store_rotates_like_the_model_and_writes_the_cache(dtype):
    torch.manual_seed(2)
    heads, kv_heads, dim, size = 6, 2, 16, 3
    qkv = torch.randn(size, heads + 2 * kv_heads, dim, device=DEVICE, dtype=dtype)
    rows = torch.tensor([2, 0, 1], device=DEVICE)
    positions = torch.tensor([5, 0, 37], device=DEVICE)
    inv_freq = 1.0 / (10_000 ** (torch.arange(0, dim, 2, device=DEVICE).float() / dim))
    cos, sin = rope_cos_sin(positions[:, None], inv_freq, 1.0, dtype)  # [B, 1, 1, D]
    cache = torch.full((4, 40, kv_heads, dim), float("nan"), device=DEVICE, dtype=dtype)
    k_cache, v_cache = cache.clone(), cache.clone()
    q = rope_store(
        qkv, cos.view(size, dim), sin.view(size, dim), k_cache, v_cache, rows, positions, heads
    )

    model_rotated = apply_rope(qkv[:, None, : heads + kv_heads], cos, sin)[:, 0]
    assert rel(q, model_rotated[:, :heads]) < TOLERANCE[dtype]
    assert rel(k_cache[rows, positions], model_rotated[:, heads:]) < TOLERANCE[dtype]
    assert torch.equal(v_cache[rows, positions], qkv[:, heads + kv_heads :])
    written = torch.zeros(4, 40, dtype=torch.bool, device=DEVICE)
    written[rows, positions] = True
    assert torch.isnan(k_cache[~written]).all() and torch.isnan(v_cache[~written]).all()

    ref_k, ref_v = cache.clone(), cache.clone()
    ref_q = rope_store_reference(
        qkv, cos.view(size, dim), sin.view(size, dim), ref_k, ref_v, rows, positions, heads
    )
    assert rel(q, ref_q) < TOLERANCE[dtype]


def _decode_case(group: int, dim: int, lengths: list[int], dtype: torch.dtype, capacity: int = 300):
    """Cache rows with NaN past each length: a kernel that reads past kv_len fails."""
    kv_heads = 2
    size = len(lengths)
    q = torch.randn(size, kv_heads * group, dim, device=DEVICE, dtype=dtype)
    k = torch.randn(size, capacity, kv_heads, dim, device=DEVICE, dtype=dtype)
    v = torch.randn_like(k)
    for row, length in enumerate(lengths):
        k[row, length:] = float("nan")
        v[row, length:] = float("nan")
    kv_len = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    return q, k, v, kv_len


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "group,dim", [(1, 16), (3, 64), (6, 128), (7, 64), (16, 32)], ids=lambda v: str(v)
)
def test_gqa_decode_matches_reference(dtype, group, dim):
    torch.manual_seed(3)
    lengths = [1, 70, 33, 256]  # one key, odd lengths, a full extent
    q, k, v, kv_len = _decode_case(group, dim, lengths, dtype)
    out = gqa_decode(q, k, v, kv_len, extent=256)
    assert rel(out, gqa_decode_reference(q, k, v, kv_len)) < TOLERANCE[dtype] * 10


def test_gqa_decode_plan_outlives_the_lengths():
    """A CUDA graph keeps the plan of its extent bucket while rows grow or shrink under it."""
    torch.manual_seed(4)
    q, k, v, kv_len = _decode_case(6, 64, [129, 3], torch.float32)
    assert decode_splits(2, 2, extent=256) > decode_splits(2, 2, extent=64)
    for extent in (130, 256, 300):
        out = gqa_decode(q, k, v, kv_len, extent=extent)
        assert rel(out, gqa_decode_reference(q, k, v, kv_len)) < 1e-5


def test_gqa_decode_equals_softmax_over_one_key():
    """With one cached key the output is exactly that key's value for every head."""
    q, k, v, kv_len = _decode_case(6, 32, [1], torch.float32)
    out = gqa_decode(q, k, v, kv_len, extent=64)
    want = v[0, 0].repeat_interleave(6, dim=0)  # [H, D]: each head's group value
    torch.testing.assert_close(out[0], want)


def test_gqa_decode_batch_one_long_row_uses_many_splits():
    """Batch 1 at a long extent: one chunk per program across ~the whole GPU, merged."""
    torch.manual_seed(5)
    q, k, v, kv_len = _decode_case(6, 32, [3001], torch.float32, capacity=4096)
    assert decode_splits(1, 2, extent=4096) == 64
    out = gqa_decode(q, k, v, kv_len, extent=4096)
    assert rel(out, gqa_decode_reference(q, k, v, kv_len)) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", [(40, 96), (300, 1100), (7, 16)])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_gemv_matches_linear(dtype, n, k, with_bias):
    torch.manual_seed(6)
    x = torch.randn(1, 1, k, device=DEVICE, dtype=dtype)
    weight = torch.randn(n, k, device=DEVICE, dtype=dtype)
    bias = torch.randn(n, device=DEVICE, dtype=dtype) if with_bias else None
    out = gemv(x, weight, bias)
    assert out.shape == (1, 1, n)
    want = torch.nn.functional.linear(
        x.float(), weight.float(), None if bias is None else bias.float()
    )
    assert rel(out, want) < TOLERANCE[dtype]
    assert gemv_supported(x, weight) and not gemv_supported(x.expand(2, 1, k), weight)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv_with_the_swiglu_gate_in_its_loads(dtype):
    torch.manual_seed(7)
    gate_up = torch.randn(1, 1, 2 * 600, device=DEVICE, dtype=dtype)
    weight = torch.randn(50, 600, device=DEVICE, dtype=dtype)
    assert gemv_supported(gate_up, weight, swiglu=True) and not gemv_supported(gate_up, weight)
    out = gemv(gate_up, weight, swiglu=True)
    want = torch.nn.functional.linear(silu_mul_reference(gate_up).float(), weight.float())
    assert out.shape == (1, 1, 50)
    assert rel(out, want) < TOLERANCE[dtype]
