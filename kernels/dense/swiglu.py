"""SwiGLU's gate: silu(gate) * up in one kernel over the fused gate/up projection's output."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 1024


@triton.jit
def _silu_mul_kernel(gate_up_ptr, out_ptr, I, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < I
    b_gate = tl.load(gate_up_ptr + row * 2 * I + offs, mask=m, other=0.0).to(tl.float32)
    b_up = tl.load(gate_up_ptr + row * 2 * I + I + offs, mask=m, other=0.0).to(tl.float32)
    b_out = b_gate * tl.sigmoid(b_gate) * b_up
    tl.store(out_ptr + row * I + offs, b_out.to(out_ptr.dtype.element_ty), mask=m)


def silu_mul(gate_up: Tensor) -> Tensor:
    """gate_up [..., 2I] (gate, then up) -> silu(gate) * up [..., I], computed in float32."""
    width = gate_up.shape[-1] // 2
    rows = gate_up.reshape(-1, 2 * width).contiguous()
    out = torch.empty(rows.shape[0], width, dtype=gate_up.dtype, device=gate_up.device)
    _silu_mul_kernel[(rows.shape[0], triton.cdiv(width, BLOCK))](rows, out, width, BLOCK=BLOCK)
    return out.view(*gate_up.shape[:-1], width)
