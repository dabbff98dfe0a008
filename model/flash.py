"""FlashAttention-2 decode over KV-cache rows, through PyTorch's varlen entry point.

Keys come straight from the cache rows (flattened [B * S_max, H_kv, D], no copy) and
`seqused_k` says how many of each row's keys count, so a decode step reads exactly each
sequence's length although its shapes are fixed (what a CUDA graph needs). The kernel
splits the keys across thread blocks (split-KV), which batch-1 decode needs to fill the GPU.

Measured on an H200 (1.5B shapes, 8k context, bf16, per layer call): 22.7 us at batch 1
and 54 us at batch 16. Folding the G query heads of a KV head into G query rows (so each
KV head is read once) was 10x slower there: the varlen kernel then stops splitting KV.
PyTorch's SDPA paths stay faster for prefill (`DenseAttention`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

MAX_HEAD_DIM = 256


@functools.cache
def _varlen_arguments() -> frozenset[str]:
    """Keyword arguments of this PyTorch build's flash varlen op (empty if it has none)."""
    op = getattr(torch.ops.aten, "_flash_attention_forward", None)
    if op is None:
        return frozenset()
    return frozenset(arg.name for arg in op.default._schema.arguments)


def flash_supported(q: Tensor) -> bool:
    """FlashAttention 2 needs sm80+, half precision, head_dim % 8 == 0 up to 256, and a
    PyTorch whose varlen op takes `seqused_k`."""
    dim = q.shape[-1]
    return (
        q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and dim % 8 == 0
        and dim <= MAX_HEAD_DIM
        and torch.cuda.get_device_capability(q.device) >= (8, 0)
        and "seqused_k" in _varlen_arguments()
    )


def flash_decode(
    q: Tensor,
    k_rows: Tensor,
    v_rows: Tensor,
    kv_len: Tensor,
    extent: int,
    offsets: Callable[[int], Tensor],
) -> Tensor:
    """One decode step: q [B, 1, H, D] over cache rows k/v [B, S_max, H_kv, D].

    Row b holds kv_len[b] valid keys (int32 [B]), the last one being q's token; `extent`
    >= max(kv_len) sizes the kernel's split-KV plan. `offsets(n)` returns int32 [B + 1] =
    0, n, 2n, ... (built once per step, shared by all layers). Returns [B, 1, H, D].
    """
    size, _, heads, dim = q.shape
    capacity = k_rows.shape[1]
    out = torch.ops.aten._flash_attention_forward(
        q.reshape(size, heads, dim),
        k_rows.flatten(0, 1),  # [B * S_max, H_kv, D], a view: rows are contiguous
        v_rows.flatten(0, 1),
        offsets(1),
        offsets(capacity),
        1,
        extent,
        0.0,
        False,
        False,
        seqused_k=kv_len,
    )[0]
    return out.view(size, 1, heads, dim)
