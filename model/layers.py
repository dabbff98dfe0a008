"""Building blocks of the decoder: RMSNorm, the SwiGLU MLP, and fused projections.

Parameters keep Hugging Face's names and orientation (`weight` is [out, in]) so a HF
state dict loads by name. `fuse_linears` lets several projections that read the same
input run as one matmul without changing those names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nsa_assist.kernels.dense import add_rms_norm, gemv, gemv_supported, silu_mul
from nsa_assist.kernels.dense.reference import add_rms_norm_reference


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight (PyTorch's fused kernel; it accumulates in float32)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., C] -> [..., C] in x's dtype."""
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)

    def add_forward(
        self, x: Tensor, residual: Tensor | None, triton: bool
    ) -> tuple[Tensor, Tensor]:
        """(norm(x + residual), x + residual): the residual add fused into the norm.

        `residual` None: x is the stream itself. `triton`: one fused kernel (CUDA).
        """
        fused = add_rms_norm if triton else add_rms_norm_reference
        return fused(x, residual, self.weight, self.eps)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, gemv_kernel: bool) -> Tensor:
    """F.linear, or our Triton matrix-vector kernel for a single row when `gemv_kernel`."""
    if gemv_kernel and gemv_supported(x, weight):
        return gemv(x, weight, bias)
    return F.linear(x, weight, bias)


class FusedLinear:
    """Several Linear layers over one input, run as a single matmul.

    Built by `fuse_linears`: the layers' parameters become views into one concatenated
    weight (and bias), so loading a state dict by name with `copy_` still updates it.
    Anything that replaces a parameter instead (`.to()`, `load_state_dict(assign=True)`)
    breaks the sharing; `is_current` detects that so callers fall back to the layers.
    """

    def __init__(self, layers: list[nn.Linear], weight: Tensor, bias: Tensor | None) -> None:
        self.layers = layers
        self.weight = weight  # [sum(out), C]
        self.bias = bias  # [sum(out)] or None

    def is_current(self) -> bool:
        """Whether every layer's parameters still live inside the fused tensors."""
        return all(_shares(layer.weight, self.weight) for layer in self.layers) and (
            self.bias is None or all(_shares(layer.bias, self.bias) for layer in self.layers)
        )

    def __call__(self, x: Tensor, gemv_kernel: bool = False) -> Tensor:
        """x: [..., C] -> [..., sum(out)]."""
        return linear(x, self.weight, self.bias, gemv_kernel)


def _shares(part: Tensor | None, whole: Tensor) -> bool:
    return part is not None and part.untyped_storage().data_ptr() == whole.data_ptr()


def fuse_linears(layers: list[nn.Linear]) -> FusedLinear:
    """Concatenate the layers' weights into one tensor and make each layer a view of it."""
    weight = torch.cat([layer.weight.detach() for layer in layers])
    has_bias = [layer.bias is not None for layer in layers]
    assert all(has_bias) or not any(has_bias), "fused layers must agree on bias"
    bias = torch.cat([layer.bias.detach() for layer in layers]) if all(has_bias) else None
    offset = 0
    for layer in layers:
        size = layer.out_features
        layer.weight = nn.Parameter(weight[offset : offset + size], requires_grad=False)
        if bias is not None:
            layer.bias = nn.Parameter(bias[offset : offset + size], requires_grad=False)
        offset += size
    return FusedLinear(layers, weight, bias)


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)
        self.fused: FusedLinear | None = None

    def fuse(self) -> None:
        """Run gate and up as one matmul (parameters stay `gate_proj` / `up_proj`); idempotent."""
        if self.fused is None or not self.fused.is_current():
            self.fused = fuse_linears([self.gate_proj, self.up_proj])

    def forward(self, x: Tensor, triton: bool = False, gemv_kernel: bool = False) -> Tensor:
        """x: [B, T, C] -> [B, T, C]; `triton`: the gate in one fused kernel (CUDA);
        `gemv_kernel`: single-row projections by our Triton kernel."""
        if self.fused is not None and self.fused.is_current():
            gate_up = self.fused(x, gemv_kernel)
            down = self.down_proj.weight
            if triton and gemv_kernel and gemv_supported(gate_up, down, swiglu=True):
                return gemv(gate_up, down, swiglu=True)  # the gate rides in the loads
            if triton:
                hidden = silu_mul(gate_up)
            else:
                gate, up = gate_up.chunk(2, dim=-1)
                hidden = F.silu(gate).mul_(up)
            return linear(hidden, down, None, gemv_kernel)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
