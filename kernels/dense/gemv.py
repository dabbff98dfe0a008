"""Matrix-vector product for batch-1 decode: y [N] = W [N, K] @ x [K] (+ bias).

A decode step at batch 1 is a chain of such products, each reading its weight once; the
small ones (1.5B: q/k/v 6 MB, o 5 MB) are bound by latency more than bandwidth. cuBLAS ran
them at 5-6 us each on an H200 (0.7-1.2 TB/s). Here each program owns a few output rows and
the K loop is unrolled at compile time, so its loads can all be issued up front.

Off by default (`Transformer.triton_gemv`): a first version with 64-row programs and a
[64 x 512] float32 accumulator spilled registers and took 58 us per projection.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

SMS = 132  # an H200
PROGRAMS_PER_SM = 4
TILE = 2048  # weight elements per program per K step (a float32 accumulator of 16 registers)
MAX_K = 16384  # unrolled loop length bound (code size)


@triton.jit
def _gemv_kernel(
    x_ptr,  # [K]
    w_ptr,  # [N, K] row-major
    bias_ptr,  # [N], read only when HAS_BIAS
    y_ptr,  # [N]
    N,
    K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_n = offs_n < N
    b_acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    for k0 in tl.static_range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        m_k = offs_k < K
        p_w = w_ptr + offs_n[:, None].to(tl.int64) * K + offs_k[None, :]
        b_w = tl.load(p_w, mask=m_n[:, None] & m_k[None, :], other=0.0)
        b_x = tl.load(x_ptr + offs_k, mask=m_k, other=0.0)
        b_acc += b_w.to(tl.float32) * b_x.to(tl.float32)[None, :]
    b_y = tl.sum(b_acc, axis=1)
    if HAS_BIAS:
        b_y += tl.load(bias_ptr + offs_n, mask=m_n, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs_n, b_y.to(y_ptr.dtype.element_ty), mask=m_n)


def gemv_supported(x: Tensor, weight: Tensor) -> bool:
    """One input row, a row-major weight, and K within the unrolled loop's bound."""
    return (
        x.numel() == x.shape[-1]
        and weight.is_contiguous()
        and weight.shape[1] <= MAX_K
        and x.dtype == weight.dtype
    )


def rows_per_program(n: int) -> int:
    """Output rows per program: 4, or up to 16 while that still leaves 4 programs per SM."""
    rows = 4
    while rows < 16 and n // (rows * 2) >= PROGRAMS_PER_SM * SMS:
        rows *= 2
    return rows


def gemv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x [..., K] holding one row, weight [N, K] (nn.Linear layout), bias [N] -> [..., N]."""
    n, k = weight.shape
    assert gemv_supported(x, weight)
    x_row = x.reshape(k).contiguous()
    y = torch.empty(n, dtype=x.dtype, device=x.device)
    block_n = rows_per_program(n)
    _gemv_kernel[(triton.cdiv(n, block_n),)](
        x_row,
        weight,
        weight if bias is None else bias,
        y,
        n,
        K=k,
        HAS_BIAS=bias is not None,
        BLOCK_N=block_n,
        BLOCK_K=min(TILE // block_n, triton.next_power_of_2(k)),
        num_warps=4,
    )
    return y.view(*x.shape[:-1], n)
