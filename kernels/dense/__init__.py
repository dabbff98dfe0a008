"""Triton kernels of the dense model's hot path: fused norm, SwiGLU, RoPE + cache write, and
split-KV GQA decode attention. Each has a plain PyTorch twin in `reference.py`."""

from .decode_attention import gqa_decode, gqa_decode_supported
from .norm import add_rms_norm
from .rope_store import rope_store, rope_store_supported
from .swiglu import silu_mul

__all__ = [
    "add_rms_norm",
    "gqa_decode",
    "gqa_decode_supported",
    "rope_store",
    "rope_store_supported",
    "silu_mul",
]
