"""Triton kernels of the dense model's hot path: fused norm, SwiGLU, RoPE + cache write,
split-KV GQA decode attention and batch-1 matrix-vector products. Each has a plain PyTorch
twin (`reference.py`, or `F.linear` for `gemv`)."""

from .decode_attention import gqa_decode, gqa_decode_supported
from .gemv import gemv, gemv_supported
from .norm import add_rms_norm
from .rope_store import rope_store, rope_store_supported
from .swiglu import silu_mul

__all__ = [
    "add_rms_norm",
    "gemv",
    "gemv_supported",
    "gqa_decode",
    "gqa_decode_supported",
    "rope_store",
    "rope_store_supported",
    "silu_mul",
]
