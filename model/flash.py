"""FlashAttention-2 through PyTorch's varlen entry point: attention over KV-cache rows.

One call serves prefill chunks and decode steps. Keys come straight from the cache rows
(flattened [B * S_max, H_kv, D], no copy) and `seqused_k` says how many of each row's
keys count, so a decode step reads exactly each sequence's length although its shapes are
fixed (what a CUDA graph needs). Causal masking is bottom-right aligned, as a chunk that
follows a cached prefix needs.

Decode groups the G query heads of each KV head into G query rows of that KV head
("grouped queries"): each KV head's keys are then read once per step, not G times.
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


def varlen_attention(
    q: Tensor,
    k_rows: Tensor,
    v_rows: Tensor,
    kv_len: Tensor,
    extent: int,
    offsets: Callable[[int], Tensor],
    grouped_decode: bool = True,
    num_splits: int | None = None,
) -> Tensor:
    """Causal attention of q [B, T, H, D] over cache rows k/v [B, S_max, H_kv, D].

    Row b holds kv_len[b] valid keys (int32 [B]), the last T of them being q's tokens;
    `extent` >= max(kv_len). `offsets(n)` returns int32 [B + 1] = 0, n, 2n, ... (shared
    by all layers of a step). Returns [B, T, H, D].
    """
    size, length, heads, dim = q.shape
    kv_heads, capacity = k_rows.shape[2], k_rows.shape[1]
    group = heads // kv_heads
    keys, values = k_rows.flatten(0, 1), v_rows.flatten(0, 1)
    extra = {} if num_splits is None else {"num_splits": num_splits}
    if length == 1 and grouped_decode:
        # [B, 1, H, D] -> [B * G, H_kv, D]: the G heads of a KV head become its G query rows
        rows = q.reshape(size, kv_heads, group, dim).transpose(1, 2).reshape(-1, kv_heads, dim)
        query_len, causal = group, False
    else:
        rows = q.reshape(size * length, heads, dim)
        query_len, causal = length, length > 1
    out = torch.ops.aten._flash_attention_forward(
        rows,
        keys,
        values,
        offsets(query_len),
        offsets(capacity),
        query_len,
        extent,
        0.0,
        causal,
        False,
        seqused_k=kv_len,
        **extra,
    )[0]
    if length == 1 and grouped_decode:
        return out.view(size, group, kv_heads, dim).transpose(1, 2).reshape(size, 1, heads, dim)
    return out.view(size, length, heads, dim)
