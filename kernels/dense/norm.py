"""Residual add + RMSNorm in one pass (one kernel instead of two or three per norm).

A decode step of a 28-layer model runs 57 norms; unfused, each is an add plus PyTorch's
norm kernels, every one a separate launch on a [B, C] tensor that takes a microsecond of
work. The kernel keeps numerics of the eager model: the sum is rounded to the input dtype
(it is the residual stream the next block reads), the norm runs in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _add_rms_norm_kernel(
    x_ptr,  # [N, C]
    residual_ptr,  # [N, C], read only when HAS_RESIDUAL
    weight_ptr,  # [C]
    out_ptr,  # [N, C]: the normalized sum
    sum_ptr,  # [N, C]: x + residual (the new residual stream)
    C,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    m_c = offs_c < C
    b_x = tl.load(x_ptr + row * C + offs_c, mask=m_c, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        b_r = tl.load(residual_ptr + row * C + offs_c, mask=m_c, other=0.0).to(tl.float32)
        b_sum = (b_x + b_r).to(sum_ptr.dtype.element_ty)
        tl.store(sum_ptr + row * C + offs_c, b_sum, mask=m_c)
        b_x = b_sum.to(tl.float32)
    b_rstd = 1.0 / tl.sqrt(tl.sum(b_x * b_x, axis=0) / C + eps)
    b_w = tl.load(weight_ptr + offs_c, mask=m_c, other=0.0).to(tl.float32)
    tl.store(
        out_ptr + row * C + offs_c, (b_x * b_rstd * b_w).to(out_ptr.dtype.element_ty), mask=m_c
    )


def add_rms_norm(
    x: Tensor, residual: Tensor | None, weight: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """(rms_norm(x + residual) * weight, x + residual) for x, residual [..., C].

    `residual` None means x is the stream itself (the first layer's input). CUDA tensors
    (or any device under TRITON_INTERPRET=1); `reference.add_rms_norm_reference` is the
    PyTorch equivalent.
    """
    channels = x.shape[-1]
    rows = x.reshape(-1, channels).contiguous()
    out = torch.empty_like(rows)
    if residual is None:
        total, residual_rows = rows, rows  # nothing to add: the sum is x itself
    else:
        residual_rows = residual.reshape(-1, channels).contiguous()
        total = torch.empty_like(rows)
    block = triton.next_power_of_2(channels)
    _add_rms_norm_kernel[(rows.shape[0],)](
        rows,
        residual_rows,
        weight,
        out,
        total,
        channels,
        eps,
        HAS_RESIDUAL=residual is not None,
        BLOCK_C=block,
        num_warps=max(1, min(8, block // 256)),
    )
    return out.view(x.shape), total.view(x.shape)
