"""Native Sparse Attention (arXiv 2502.11089): config, plain reference, Triton op, module."""

from .config import NSAConfig
from .decode import nsa_decode, update_compressed_cache
from .module import CompressionMLP, NSAAttention
from .op import KernelTuning, nsa_attention
from .reference import nsa_reference

__all__ = [
    "CompressionMLP",
    "KernelTuning",
    "NSAAttention",
    "NSAConfig",
    "nsa_attention",
    "nsa_decode",
    "nsa_reference",
    "update_compressed_cache",
]
