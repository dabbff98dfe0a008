"""Matrix-vector product for batch-1 decode: y [N] = W [N, K] @ x [K] (+ bias).

A decode step at batch 1 is a chain of such products, each reading its weight once; the
small ones (1.5B: q/k/v 6 MB, o 5 MB) are bound by latency more than bandwidth. cuBLAS ran
them at 5-6 us each on an H200 (0.7-1.2 TB/s). Here each program owns a few output rows and
the K loop is unrolled at compile time, so its loads can all be issued up front.

Measured on an H200 (1.5B shapes, per call, each call its own weight as in the model; the
`bench/decode_kernels_gpu.py --sweep`, results/decode-sweep-h200.json): q/k/v 4.0 vs cuBLAS
5.3 us, o 3.4 vs 6.4, gate/up 14.7 vs 16.6, down 9.4 vs 12.2 (9.3 with the SwiGLU gate
fused), lm_head 105.6 vs 114.2. A first version with 64-row programs and a [64 x 512]
float32 accumulator spilled registers and took 58 us.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

TILE = 2048  # weight elements per program per K step (a float32 accumulator of 16 registers)
SWIGLU_TILE = 4096
MAX_K = 16384  # unrolled loop length bound (code size)


@triton.jit
def _gemv_kernel(
    x_ptr,  # [K], or [2K] (gate, then up) when SWIGLU
    w_ptr,  # [N, K] row-major
    bias_ptr,  # [N], read only when HAS_BIAS
    y_ptr,  # [N]
    N,
    K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SWIGLU: tl.constexpr,  # x = silu(gate) * up, computed as it is read (rounded as stored)
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
        if SWIGLU:
            b_gate = b_x.to(tl.float32)
            b_up = tl.load(x_ptr + K + offs_k, mask=m_k, other=0.0).to(tl.float32)
            b_x = (b_gate * tl.sigmoid(b_gate) * b_up).to(x_ptr.dtype.element_ty)
        b_acc += b_w.to(tl.float32) * b_x.to(tl.float32)[None, :]
    b_y = tl.sum(b_acc, axis=1)
    if HAS_BIAS:
        b_y += tl.load(bias_ptr + offs_n, mask=m_n, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs_n, b_y.to(y_ptr.dtype.element_ty), mask=m_n)


def gemv_supported(x: Tensor, weight: Tensor, swiglu: bool = False) -> bool:
    """One input row (of 2K values with `swiglu`), a row-major weight [N, K], and K within
    the unrolled loop's bound."""
    width = x.shape[-1] // 2 if swiglu else x.shape[-1]
    return (
        x.numel() == x.shape[-1]
        and weight.is_contiguous()
        and weight.shape[1] == width <= MAX_K
        and x.dtype == weight.dtype
    )


def rows_per_program(swiglu: bool) -> int:
    """Output rows per program, from the H200 sweep (`bench/decode_kernels_gpu.py`): 2 was
    fastest or within noise for every 1.5B projection; the SwiGLU-fused down projection
    wanted 4 rows with 4096-element tiles (9.3 us; 13.7 us at 4 x 2048)."""
    return 4 if swiglu else 2


def gemv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    swiglu: bool = False,
    rows: int | None = None,
    tile: int | None = None,
) -> Tensor:
    """x [..., K] holding one row, weight [N, K] (nn.Linear layout), bias [N] -> [..., N].

    `swiglu`: x is [..., 2K] (gate, then up) and the product is with silu(gate) * up, the
    SwiGLU gate fused into the down projection's loads. `rows` (output rows per program,
    default `rows_per_program`) and `tile` are for tuning sweeps.
    """
    n, k = weight.shape
    assert gemv_supported(x, weight, swiglu)
    x_row = x.reshape(-1).contiguous()
    y = torch.empty(n, dtype=x.dtype, device=x.device)
    block_n = rows or rows_per_program(swiglu)
    tile = tile or (SWIGLU_TILE if swiglu else TILE)
    _gemv_kernel[(triton.cdiv(n, block_n),)](
        x_row,
        weight,
        weight if bias is None else bias,
        y,
        n,
        K=k,
        HAS_BIAS=bias is not None,
        SWIGLU=swiglu,
        BLOCK_N=block_n,
        BLOCK_K=min(tile // block_n, triton.next_power_of_2(k)),
        num_warps=4,
    )
    return y.view(*x.shape[:-1], n)
