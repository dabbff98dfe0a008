"""Preallocated KV cache: one row per sequence slot, `max_seq_len` positions per row.

Allocated once (zeros, so masked-out stale entries never inject NaN into attention) and
reused for every request; the engine keeps the active sequences in rows [0, B) so a decode
step reads contiguous rows. Implements the model's `KVStore`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nsa_assist.model.attention import AttentionBackend, LayerKV
from nsa_assist.model.config import ModelConfig


class KVCache:
    """Per-layer K and V buffers [N, S_max, H_kv, D] plus the backend's per-layer state."""

    def __init__(
        self,
        config: ModelConfig,
        rows: int,
        max_seq_len: int,
        device: torch.device,
        dtype: torch.dtype,
        backend: AttentionBackend,
    ) -> None:
        shape = (rows, max_seq_len, config.num_kv_heads, config.head_dim)
        self.rows = rows
        self.max_seq_len = max_seq_len
        self.backend = backend
        self.k: list[Tensor] = [
            torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_layers)
        ]
        self.v: list[Tensor] = [
            torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_layers)
        ]
        self.state: list[Any] = [
            backend.new_layer_state(i, rows, max_seq_len, device, dtype)
            for i in range(config.num_layers)
        ]

    @staticmethod
    def bytes_needed(config: ModelConfig, rows: int, max_seq_len: int, dtype: torch.dtype) -> int:
        """Size of the K and V buffers (dense part only)."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim * itemsize
        return per_token * rows * max_seq_len

    def layer(self, index: int, rows: slice, extent: int) -> LayerKV:
        """The model's view of layer `index` for one step over `rows`, covering [0, extent)."""
        return LayerKV(self.k[index], self.v[index], rows, extent, self.state[index])

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of row `src` into row `dst` (all layers)."""
        for k, v in zip(self.k, self.v, strict=True):
            k[dst, :length] = k[src, :length]
            v[dst, :length] = v[src, :length]
        for state in self.state:
            self.backend.copy_row(state, src, dst, length)
