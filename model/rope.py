"""Rotary position embedding (RoPE), plain or YaRN-scaled, in the half-split layout of HF.

cos/sin are computed from the positions once per forward (cheap, [B, T, D]) instead of
read from a table, so any position works and a CUDA graph only sees tensor inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import ModelConfig, RopeScaling


def inverse_frequencies(config: ModelConfig) -> tuple[Tensor, float]:
    """Per-pair rotation speeds [D/2] (float32, CPU) and the cos/sin multiplier (YaRN's mscale)."""
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim
    base_freq = 1.0 / (config.rope_theta**exponents)
    if config.rope_scaling is None:
        return base_freq, 1.0
    return _yarn_frequencies(base_freq, config.rope_theta, dim, config.rope_scaling)


def _yarn_frequencies(
    base_freq: Tensor, theta: float, dim: int, yarn: RopeScaling
) -> tuple[Tensor, float]:
    """Blend interpolated (slow) and original (fast) frequencies by wavelength (YaRN, sec. 3.2).

    Pairs that turn more than `beta_fast` times over the trained context keep their speed,
    pairs that turn less than `beta_slow` times are slowed by `factor`, a linear ramp between.
    """

    def pair_index(rotations: float) -> float:
        return (
            dim
            * math.log(yarn.original_max_position / (rotations * 2 * math.pi))
            / (2 * math.log(theta))
        )

    low, high = pair_index(yarn.beta_fast), pair_index(yarn.beta_slow)
    if yarn.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # a single-point ramp would divide by zero
    pairs = torch.arange(dim // 2, dtype=torch.float32, device="cpu")
    ramp = ((pairs - low) / (high - low)).clamp(0, 1)
    keep = 1.0 - ramp  # 1: extrapolate (original speed), 0: interpolate (slowed)
    freq = (base_freq / yarn.factor) * (1.0 - keep) + base_freq * keep
    return freq, yarn.mscale


def rope_cos_sin(
    positions: Tensor, inv_freq: Tensor, mscale: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """cos and signed sin for `apply_rope`, each [B, T, 1, D] in `dtype`.

    positions: [B, T] int. The sin's first half is negated so that the rotation is
    `x * cos + swap_halves(x) * sin` (one fewer op than HF's rotate_half).
    """
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # [B, T, D/2]
    cos = angles.cos() * mscale
    sin = angles.sin() * mscale
    cos = torch.cat((cos, cos), dim=-1).unsqueeze(2)
    sin = torch.cat((-sin, sin), dim=-1).unsqueeze(2)
    return cos.to(dtype), sin.to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [B, T, H, D] by cos/sin [B, T, 1, D] from `rope_cos_sin`; returns a new tensor."""
    half = x.shape[-1] // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return torch.addcmul(x * cos, swapped, sin)
