"""NSAConfig: the block sizes, counts and modes of Native Sparse Attention (arXiv 2502.11089)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import KernelsUserError

COMBINE_MODES = ("gated", "union")
COMPRESSION_KINDS = ("mean", "mlp")


@dataclass(frozen=True, slots=True)
class NSAConfig:
    """One NSA layer's sparsity pattern; the paper's values are the defaults.

    cmp_block (l) and cmp_stride (d) shape the compressed tokens, slc_block (l') the blocks the
    selection branch reads, n_selected (n) how many of them (the first block and the two local
    blocks included), window (w) the sliding window. `combine` is `gated` (the paper's
    sum of gated branches) or `union` (one softmax over selected blocks and window, for models
    trained dense); `compression` is `mean` or `mlp`.
    """

    cmp_block: int = 32
    cmp_stride: int = 16
    slc_block: int = 64
    n_selected: int = 16
    window: int = 512
    combine: str = "gated"
    compression: str = "mean"

    def __post_init__(self) -> None:
        for name in ("cmp_block", "cmp_stride", "slc_block", "n_selected", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise KernelsUserError(f"NSAConfig.{name} must be a positive int, got {value!r}")
        if self.cmp_block % self.cmp_stride or self.slc_block % self.cmp_stride:
            raise KernelsUserError(
                f"cmp_stride ({self.cmp_stride}) must divide cmp_block ({self.cmp_block}) "
                f"and slc_block ({self.slc_block})"
            )
        if self.cmp_stride > self.cmp_block:
            raise KernelsUserError("cmp_stride must not exceed cmp_block")
        if self.n_selected < 3:
            raise KernelsUserError(
                f"n_selected must be >= 3 (the first and two local blocks), got {self.n_selected}"
            )
        if self.combine not in COMBINE_MODES:
            raise KernelsUserError(f"combine must be one of {COMBINE_MODES}, got {self.combine!r}")
        if self.compression not in COMPRESSION_KINDS:
            raise KernelsUserError(
                f"compression must be one of {COMPRESSION_KINDS}, got {self.compression!r}"
            )

    def num_compressed(self, length: int) -> int:
        """Compressed tokens of a sequence of `length` tokens: floor((T - l) / d) + 1, or 0."""
        if length < self.cmp_block:
            return 0
        return (length - self.cmp_block) // self.cmp_stride + 1

    def num_slc_blocks(self, length: int) -> int:
        """Selection blocks that cover a sequence of `length` tokens (the last may be partial)."""
        return -(-length // self.slc_block)
