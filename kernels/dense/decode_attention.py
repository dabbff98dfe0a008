"""Dense GQA attention for a decode step: one query token per sequence, split over the keys.

At batch 1 a decode step has only H_kv (2 for our models) query groups; a kernel that gives
each group one program leaves a 132-SM GPU idle. So the keys of each row are cut into
`splits` chunks (flash-decoding): program (b, h_kv, split) attends the G query heads of its
group to its chunk — the G heads ride as rows of one tile, so each key is read once — and
writes a partial output with its log-sum-exp; a second kernel merges the chunks.

Lengths stay on the device (`kv_len`), so one launch plan (fixed by `extent`, a bound on
every length) serves a CUDA graph across steps: each program cuts its own row's length into
the chunks at run time, and chunks past the end write an empty partial.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

TARGET_PROGRAMS = 264  # two waves of a 132-SM H200
BLOCK_N = 64  # keys per tile
MERGE_TILE = 8192  # partial-output elements one merge program holds
LOG2E = 1.4426950408889634


@triton.jit
def _decode_split_kernel(
    q_ptr,  # [B, H, D]
    k_ptr,  # [B, S, H_kv, D] (row stride given)
    v_ptr,  # [B, S, H_kv, D] (same strides as k)
    kv_len_ptr,  # [B] int32
    o_ptr,  # [B, H_kv, SPLITS, G, D] float32 out
    lse_ptr,  # [B, H_kv, SPLITS, G] float32 out (log2 units)
    stride_kv_b,
    stride_kv_s,
    scale_log2,
    H_KV: tl.constexpr,
    G: tl.constexpr,
    G_PAD: tl.constexpr,
    D: tl.constexpr,
    SPLITS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,  # float32 inputs: "ieee" (Triton would use tf32)
):
    i_b = tl.program_id(0).to(tl.int64)
    i_hk = tl.program_id(1)
    i_split = tl.program_id(2)
    n_keys = tl.load(kv_len_ptr + i_b)
    per_split = tl.cdiv(tl.cdiv(n_keys, SPLITS), BLOCK_N) * BLOCK_N
    start = i_split * per_split
    end = tl.minimum(start + per_split, n_keys)

    offs_g = tl.arange(0, G_PAD)
    offs_d = tl.arange(0, D)
    m_g = offs_g < G
    p_q = q_ptr + (i_b * H_KV * G + i_hk * G + offs_g[:, None]) * D + offs_d[None, :]
    b_q = tl.load(p_q, mask=m_g[:, None], other=0.0)  # [G_PAD, D]
    b_m = tl.full([G_PAD], float("-inf"), dtype=tl.float32)
    b_l = tl.zeros([G_PAD], dtype=tl.float32)
    b_acc = tl.zeros([G_PAD, D], dtype=tl.float32)
    p_kv = i_b * stride_kv_b + i_hk * D + offs_d[None, :]
    for i_n in range(start, end, BLOCK_N):
        offs_n = i_n + tl.arange(0, BLOCK_N)
        m_n = offs_n < end
        b_k = tl.load(k_ptr + p_kv + offs_n[:, None] * stride_kv_s, mask=m_n[:, None], other=0.0)
        b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PRECISION) * scale_log2  # [G_PAD, BLOCK_N]
        b_s = tl.where(m_n[None, :], b_s, float("-inf"))
        b_m_new = tl.maximum(b_m, tl.max(b_s, axis=1))
        b_p = tl.exp2(b_s - b_m_new[:, None])
        b_alpha = tl.exp2(b_m - b_m_new)
        b_v = tl.load(v_ptr + p_kv + offs_n[:, None] * stride_kv_s, mask=m_n[:, None], other=0.0)
        b_acc = b_acc * b_alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v, input_precision=PRECISION)
        b_l = b_l * b_alpha + tl.sum(b_p, axis=1)
        b_m = b_m_new

    has_keys = b_l > 0  # a chunk past the row's end is empty: weight zero in the merge
    b_o = tl.where(has_keys[:, None], b_acc / tl.where(has_keys, b_l, 1.0)[:, None], 0.0)
    b_lse = tl.where(has_keys, b_m + tl.log2(tl.where(has_keys, b_l, 1.0)), float("-inf"))
    part = (i_b * H_KV + i_hk) * SPLITS + i_split
    tl.store(lse_ptr + part * G + offs_g, b_lse, mask=m_g)
    p_o = o_ptr + (part * G + offs_g[:, None]) * D + offs_d[None, :]
    tl.store(p_o, b_o, mask=m_g[:, None])


@triton.jit
def _decode_merge_kernel(
    o_ptr,  # [B, H_kv, SPLITS, G, D] float32
    lse_ptr,  # [B, H_kv, SPLITS, G] float32
    out_ptr,  # [B, H, D]
    H_KV: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    SPLITS: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # every partial at once (no loop over splits: a loop of dependent loads was 8 us)
    i_b = tl.program_id(0).to(tl.int64)
    i_h = tl.program_id(1)
    i_d = tl.program_id(2)
    i_hk, i_g = i_h // G, i_h % G
    first = (i_b * H_KV + i_hk) * SPLITS  # first partial of this group
    offs_s = tl.arange(0, SPLITS_PAD)
    m_s = offs_s < SPLITS
    offs_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    b_lse = tl.load(lse_ptr + (first + offs_s) * G + i_g, mask=m_s, other=float("-inf"))
    b_w = tl.exp2(b_lse - tl.max(b_lse, axis=0))  # split 0 always holds keys: finite max
    p_o = o_ptr + ((first + offs_s[:, None]) * G + i_g) * D + offs_d[None, :]
    b_o = tl.load(p_o, mask=m_s[:, None], other=0.0)  # [SPLITS_PAD, BLOCK_D]
    b_out = tl.sum(b_w[:, None] * b_o, axis=0) / tl.sum(b_w, axis=0)
    p_out = out_ptr + (i_b * H_KV * G + i_h) * D + offs_d
    tl.store(p_out, b_out.to(out_ptr.dtype.element_ty))


def decode_splits(
    size: int, kv_heads: int, extent: int, programs: int = TARGET_PROGRAMS, block_n: int = BLOCK_N
) -> int:
    """Chunks per row: about `programs` programs in all, never a chunk under one tile."""
    return max(1, min(math.ceil(programs / (size * kv_heads)), triton.cdiv(extent, block_n)))


def gqa_decode_supported(heads: int, kv_heads: int, head_dim: int) -> bool:
    """Power-of-two head dims from 16 (tile width) and a GQA group of at most 64 heads."""
    group = heads // kv_heads
    return head_dim >= 16 and head_dim & (head_dim - 1) == 0 and 0 < group <= 64


def gqa_decode(
    q: Tensor,
    k_rows: Tensor,
    v_rows: Tensor,
    kv_len: Tensor,
    extent: int,
    programs: int = TARGET_PROGRAMS,
    block_n: int = BLOCK_N,
) -> Tensor:
    """One decode step of dense causal GQA attention.

    q [B, H, D] (contiguous); k_rows, v_rows [B, S, H_kv, D] with the same strides, the last
    two dims contiguous (cache rows, a view); kv_len [B] int32: row b attends its first
    kv_len[b] keys (>= 1); extent >= max(kv_len) sizes the split plan. Returns [B, H, D].
    `programs` (split-kernel programs to aim for) and `block_n` (keys per tile) are for
    tuning sweeps.
    """
    size, heads, dim = q.shape
    kv_heads = k_rows.shape[2]
    group = heads // kv_heads
    assert gqa_decode_supported(heads, kv_heads, dim) and q.is_contiguous()
    assert k_rows.stride() == v_rows.stride() and k_rows.stride(3) == 1
    assert k_rows.stride(2) == dim
    splits = decode_splits(size, kv_heads, extent, programs, block_n)
    partial = torch.empty(size, kv_heads, splits, group, dim, dtype=torch.float32, device=q.device)
    lse = torch.empty(size, kv_heads, splits, group, dtype=torch.float32, device=q.device)
    _decode_split_kernel[(size, kv_heads, splits)](
        q,
        k_rows,
        v_rows,
        kv_len,
        partial,
        lse,
        k_rows.stride(0),
        k_rows.stride(1),
        LOG2E / math.sqrt(dim),
        H_KV=kv_heads,
        G=group,
        G_PAD=max(16, triton.next_power_of_2(group)),
        D=dim,
        SPLITS=splits,
        BLOCK_N=block_n,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=4,
    )
    out = torch.empty_like(q)
    splits_pad = triton.next_power_of_2(splits)
    block_d = max(16, min(dim, MERGE_TILE // splits_pad))
    _decode_merge_kernel[(size, heads, dim // block_d)](
        partial,
        lse,
        out,
        H_KV=kv_heads,
        G=group,
        D=dim,
        SPLITS=splits,
        SPLITS_PAD=splits_pad,
        BLOCK_D=block_d,
        num_warps=4,
    )
    return out
