"""Architecture hyper-parameters of a decoder-only transformer (qwen2 / llama).

One frozen record, validated once, built by the loaders from GGUF metadata or a
Hugging Face `config.json` (`config_from_hf`) and passed to `Transformer`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .errors import ModelError

Arch = Literal["qwen2", "llama"]
ARCHS: tuple[str, ...] = ("qwen2", "llama")

# YaRN defaults from the paper (arXiv 2309.00071), also Hugging Face's defaults.
YARN_BETA_FAST = 32.0
YARN_BETA_SLOW = 1.0


class ModelConfigError(ModelError, ValueError):
    """A model description is inconsistent or unsupported (a bad file or a caller's mistake)."""


@dataclass(frozen=True, slots=True)
class RopeScaling:
    """YaRN rotary scaling: stretch RoPE past the trained context.

    `factor` = target context / `original_max_position`. `attention_factor` scales
    cos/sin (None: the paper's 0.1 * ln(factor) + 1). `truncate` rounds the
    correction range to whole dimensions, as Hugging Face does by default.
    """

    factor: float
    original_max_position: int
    beta_fast: float = YARN_BETA_FAST
    beta_slow: float = YARN_BETA_SLOW
    attention_factor: float | None = None
    truncate: bool = True

    def __post_init__(self) -> None:
        if not self.factor >= 1.0:
            raise ModelConfigError(f"YaRN factor must be >= 1, got {self.factor}")
        if self.original_max_position <= 0:
            raise ModelConfigError(
                f"YaRN original_max_position must be > 0, got {self.original_max_position}"
            )
        if not self.beta_fast > self.beta_slow > 0:
            raise ModelConfigError(
                f"YaRN needs beta_fast > beta_slow > 0, got {self.beta_fast}, {self.beta_slow}"
            )

    @property
    def mscale(self) -> float:
        """Multiplier on cos/sin (the attention temperature correction)."""
        if self.attention_factor is not None:
            return self.attention_factor
        return 0.1 * math.log(self.factor) + 1.0 if self.factor > 1.0 else 1.0


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Shapes and constants of one model. Field names follow the team contract."""

    arch: Arch
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position: int
    tie_embeddings: bool
    qkv_bias: bool
    rope_scaling: RopeScaling | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelConfigError(f"unsupported architecture {self.arch!r}; supported: {ARCHS}")
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "max_position",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ModelConfigError(f"{name} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ModelConfigError(
                f"num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ModelConfigError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if not self.rms_norm_eps > 0 or not self.rope_theta > 0:
            raise ModelConfigError("rms_norm_eps and rope_theta must be > 0")

    @property
    def group_size(self) -> int:
        """Query heads per KV head (G)."""
        return self.num_heads // self.num_kv_heads

    @property
    def context_length(self) -> int:
        """Longest context the positional encoding is meant for (YaRN-extended if set)."""
        if self.rope_scaling is None:
            return self.max_position
        return int(self.rope_scaling.original_max_position * self.rope_scaling.factor)

    def with_context(self, tokens: int) -> ModelConfig:
        """This config, with YaRN switched on when `tokens` exceeds the trained context.

        The factor is the smallest power of two that covers `tokens`; an explicit
        `rope_scaling` is kept as is.
        """
        if self.rope_scaling is not None or tokens <= self.max_position:
            return self
        factor = 2.0 ** math.ceil(math.log2(tokens / self.max_position))
        return replace(self, rope_scaling=RopeScaling(factor, self.max_position))


def config_from_hf(hf: Mapping[str, Any]) -> ModelConfig:
    """Build a ModelConfig from a Hugging Face `config.json` dict (Qwen2 or Llama)."""
    model_type = hf.get("model_type")
    if model_type not in ARCHS:
        raise ModelConfigError(f"unsupported model_type {model_type!r}; supported: {ARCHS}")
    heads = int(hf["num_attention_heads"])
    head_dim = hf.get("head_dim") or int(hf["hidden_size"]) // heads
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    return ModelConfig(
        arch=model_type,
        vocab_size=int(hf["vocab_size"]),
        hidden_size=int(hf["hidden_size"]),
        intermediate_size=int(hf["intermediate_size"]),
        num_layers=int(hf["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(head_dim),
        rms_norm_eps=float(hf["rms_norm_eps"]),
        rope_theta=float(theta),
        max_position=int(hf["max_position_embeddings"]),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or bool(hf.get("attention_bias", False)),
        rope_scaling=_rope_scaling_from_hf(rope, int(hf["max_position_embeddings"])),
    )


def _rope_scaling_from_hf(rope: Mapping[str, Any], max_position: int) -> RopeScaling | None:
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind == "default":
        return None
    if kind != "yarn":
        raise ModelConfigError(f"unsupported rope scaling {kind!r}; supported: yarn")
    return RopeScaling(
        factor=float(rope["factor"]),
        original_max_position=int(rope.get("original_max_position_embeddings") or max_position),
        beta_fast=float(rope.get("beta_fast") or YARN_BETA_FAST),
        beta_slow=float(rope.get("beta_slow") or YARN_BETA_SLOW),
        attention_factor=rope.get("attention_factor"),
        truncate=bool(rope.get("truncate", True)),
    )
