"""Plain PyTorch versions of the dense-model kernels: the CPU path and the tests' ground truth.

Numerics follow the eager model: the residual sum is rounded to the input dtype before the
norm reads it; everything else is computed in float32 and rounded once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def add_rms_norm_reference(
    x: Tensor, residual: Tensor | None, weight: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """(rms_norm(x + residual) * weight, x + residual); x, residual [..., C]."""
    total = x if residual is None else x + residual
    return F.rms_norm(total, (total.shape[-1],), weight, eps), total


def silu_mul_reference(gate_up: Tensor) -> Tensor:
    """gate_up [..., 2I] (gate then up) -> silu(gate) * up [..., I]."""
    gate, up = gate_up.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(gate_up.dtype)


def rope_store_reference(
    qkv: Tensor,
    cos: Tensor,
    sin: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    rows: Tensor,
    positions: Tensor,
    heads: int,
) -> Tensor:
    """Rotate q and k of one new token per sequence and store k, v in the cache.

    qkv [B, H + 2 H_kv, D]; cos / signed sin [B, D] (`model.rope.rope_cos_sin` layout);
    caches [N, S, H_kv, D]; rows, positions [B] int64. Returns q [B, H, D].
    """
    kv_heads = (qkv.shape[1] - heads) // 2
    half = qkv.shape[-1] // 2
    x = qkv.float()
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    rotated = x * cos.float()[:, None] + swapped * sin.float()[:, None]
    rotated = rotated.to(qkv.dtype)
    k_cache[rows, positions] = rotated[:, heads : heads + kv_heads]
    v_cache[rows, positions] = qkv[:, heads + kv_heads :]
    return rotated[:, :heads]


def gqa_decode_reference(q: Tensor, k_rows: Tensor, v_rows: Tensor, kv_len: Tensor) -> Tensor:
    """One query per sequence: q [B, H, D] over k/v rows [B, S, H_kv, D], the first
    kv_len[b] keys of row b. Returns [B, H, D] in q's dtype (softmax in float32)."""
    size, heads, dim = q.shape
    kv_heads = k_rows.shape[2]
    grouped = q.float().view(size, kv_heads, heads // kv_heads, dim)
    span = torch.arange(k_rows.shape[1], device=q.device)
    valid = span[None, :] < kv_len[:, None].to(span.device)  # [B, S]
    stale = ~valid[:, :, None, None]  # entries past a row's length are never read
    keys = k_rows.float().masked_fill(stale, 0.0).transpose(1, 2)  # [B, H_kv, S, D]
    values = v_rows.float().masked_fill(stale, 0.0).transpose(1, 2)
    scores = grouped @ keys.transpose(-1, -2) / dim**0.5  # [B, H_kv, G, S]
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    out = scores.softmax(-1) @ values  # [B, H_kv, G, D]
    return out.reshape(size, heads, dim).to(q.dtype)
