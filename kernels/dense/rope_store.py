"""Decode-step RoPE + KV-cache write in one kernel.

After the fused q/k/v projection of one new token per sequence, the eager model splits
q, k, v, rotates q and k (several elementwise kernels) and scatters k and v into the cache
(two more). Here one program per (sequence, head) does its head's share: rotate and return
q, rotate and store k, store v — straight from the projection's output.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _rope_store_kernel(
    qkv_ptr,  # [B, H + 2 H_kv, D]
    cos_ptr,  # [B, D]
    sin_ptr,  # [B, D], first half negated (only the second half is read)
    q_ptr,  # [B, H, D] out
    k_cache_ptr,  # [N, S, H_kv, D]
    v_cache_ptr,  # [N, S, H_kv, D]
    rows_ptr,  # [B] int64
    positions_ptr,  # [B] int64
    stride_qkv_b,
    stride_cos_b,
    stride_cache_n,
    stride_cache_s,
    H: tl.constexpr,
    H_KV: tl.constexpr,
    D: tl.constexpr,
):
    i_b = tl.program_id(0).to(tl.int64)
    i_h = tl.program_id(1)
    HALF: tl.constexpr = D // 2
    offs = tl.arange(0, HALF)
    p_src = qkv_ptr + i_b * stride_qkv_b + i_h * D
    i_row = tl.load(rows_ptr + i_b)
    i_pos = tl.load(positions_ptr + i_b)
    p_slot = i_row * stride_cache_n + i_pos * stride_cache_s  # [H_kv, D] of this token
    if i_h < H + H_KV:
        b_x1 = tl.load(p_src + offs).to(tl.float32)
        b_x2 = tl.load(p_src + HALF + offs).to(tl.float32)
        b_cos = tl.load(cos_ptr + i_b * stride_cos_b + offs).to(tl.float32)
        b_sin = tl.load(sin_ptr + i_b * stride_cos_b + HALF + offs).to(tl.float32)
        b_o1 = b_x1 * b_cos - b_x2 * b_sin
        b_o2 = b_x2 * b_cos + b_x1 * b_sin
        if i_h < H:  # noqa: SIM108 (a runtime branch; Triton has no runtime ternary)
            p_dst = q_ptr + (i_b * H + i_h) * D
        else:
            p_dst = k_cache_ptr + p_slot + (i_h - H) * D
        tl.store(p_dst + offs, b_o1.to(p_dst.dtype.element_ty))
        tl.store(p_dst + HALF + offs, b_o2.to(p_dst.dtype.element_ty))
    else:
        p_dst = v_cache_ptr + p_slot + (i_h - H - H_KV) * D
        tl.store(p_dst + offs, tl.load(p_src + offs))
        tl.store(p_dst + HALF + offs, tl.load(p_src + HALF + offs))


def rope_store_supported(head_dim: int) -> bool:
    """The kernel tiles a head as two power-of-two halves."""
    return head_dim >= 4 and head_dim & (head_dim - 1) == 0


def rope_store(
    qkv: Tensor,
    cos: Tensor,
    sin: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    rows: Tensor,
    positions: Tensor,
    heads: int,
) -> Tensor:
    """Rotate q and k of one new token per sequence, store k and v in the cache.

    qkv [B, H + 2 H_kv, D] (rows contiguous); cos / signed sin [B, D] as from
    `model.rope.rope_cos_sin`; caches [N, S, H_kv, D] contiguous; rows, positions [B]
    int64 (cache row and position of each token). Returns q [B, H, D].
    """
    size, all_heads, dim = qkv.shape
    kv_heads = (all_heads - heads) // 2
    assert rope_store_supported(dim) and qkv.stride(2) == 1 and qkv.stride(1) == dim
    assert k_cache.is_contiguous() and v_cache.is_contiguous()
    assert cos.stride(-1) == 1 and cos.stride() == sin.stride()
    q = torch.empty(size, heads, dim, dtype=qkv.dtype, device=qkv.device)
    _rope_store_kernel[(size, all_heads)](
        qkv,
        cos,
        sin,
        q,
        k_cache,
        v_cache,
        rows,
        positions,
        qkv.stride(0),
        cos.stride(0),
        k_cache.stride(0),
        k_cache.stride(1),
        H=heads,
        H_KV=kv_heads,
        D=dim,
        num_warps=1,
    )
    return q
