"""The attention backend interface, and its dense implementation (PyTorch SDPA).

The model computes q, k, v and RoPE, writes k/v into the KV cache, then hands the
backend everything it needs to attend:

- `q` [B, T, H, D]: the new tokens' queries (RoPE applied);
- a `LayerKV`: this layer's cache rows for the batch. `kv.keys()` / `kv.values()` are
  [B, S, H_kv, D] views that already hold the new tokens (S = `batch.extent`, at least
  the longest sequence; positions >= `batch.kv_len[b]` are stale and must be ignored).
  `kv.state` is the backend's own per-layer state (created by `new_layer_state`, kept in
  the cache: NSA keeps its compressed-KV blocks there and updates them as blocks fill);
- a `StepBatch`: per-sequence positions [B, T] and lengths [B], the common start when all
  sequences start together (prefill), and the backend's per-step `plan`;
- the layer index, so a backend may treat layers differently (dense for some, NSA others).

It returns [B, T, H, D]. `prepare(batch)` runs once per step before the layers, for work
they share (masks, offsets, block tables), stored in `batch.plan`.

On CUDA the decode step (`batch.start is None`) is captured once into a CUDA graph and
then replayed, so `prepare` and `forward` run as Python only at capture time. On that
path they must work with tensor operations on device tensors: no host syncs (`.item()`,
`.tolist()`), no Python decisions on tensor values, no per-step Python bookkeeping;
updates of `kv.state` must be tensor writes (e.g. keyed on `batch.kv_len`).

To plug a backend in: `model.set_attention(backend)`, then build the `Engine` (its KV
cache asks the backend for per-layer state and tells it when a row moves).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.bias import causal_lower_right

from nsa_assist.kernels.dense import gqa_decode, gqa_decode_supported

from .config import ModelConfig
from .flash import flash_decode, flash_supported


@dataclass(frozen=True, slots=True)
class StepBatch:
    """One forward step: B sequences (cache rows `rows`) each adding T tokens.

    start: the first new position when it is the same for every sequence (prefill,
        one Python int); None for decode, where each row has its own (`positions[:, 0]`).
    extent: S, the cache length the views cover; fixed per CUDA graph, so it may exceed
        every sequence's length.
    """

    rows: slice
    positions: Tensor  # [B, T] int64, absolute positions of the new tokens
    kv_len: Tensor  # [B] int32, tokens cached after this step (incl. the new ones)
    extent: int
    start: int | None
    row_ids: Tensor | None = None  # [B] int64, decode only: cache row of each sequence
    plan: Any = None  # set by AttentionBackend.prepare; opaque to the model

    @property
    def size(self) -> int:
        return self.rows.stop - self.rows.start

    @staticmethod
    def prefill(row: int, start: int, length: int, device: torch.device) -> StepBatch:
        """One sequence at cache row `row` adding tokens [start, start + length)."""
        positions = torch.arange(start, start + length, device=device).unsqueeze(0)
        kv_len = torch.full((1,), start + length, dtype=torch.int32, device=device)
        return StepBatch(slice(row, row + 1), positions, kv_len, start + length, start)

    @staticmethod
    def fresh(size: int, length: int, device: torch.device) -> StepBatch:
        """B sequences of `length` new tokens from position 0 (a cache-less forward)."""
        positions = torch.arange(length, device=device).expand(size, length)
        kv_len = torch.full((size,), length, dtype=torch.int32, device=device)
        return StepBatch(slice(0, size), positions, kv_len, length, 0)

    @staticmethod
    def decode(positions: Tensor, extent: int) -> StepBatch:
        """Rows [0, B) each adding one token at its own position: positions [B] int64."""
        size = positions.shape[0]
        kv_len = (positions + 1).to(torch.int32)
        row_ids = torch.arange(size, device=positions.device)
        return StepBatch(slice(0, size), positions.unsqueeze(1), kv_len, extent, None, row_ids)


@dataclass(slots=True)
class LayerKV:
    """One layer's cache, seen by one step: full buffers plus the rows and extent in use."""

    k_all: Tensor  # [N, S_max, H_kv, D]: every cache row
    v_all: Tensor  # [N, S_max, H_kv, D]
    rows: slice
    extent: int
    state: Any = field(default=None)

    def keys(self) -> Tensor:
        """[B, S, H_kv, D] view of this step's rows."""
        return self.k_all[self.rows, : self.extent]

    def values(self) -> Tensor:
        """[B, S, H_kv, D] view of this step's rows."""
        return self.v_all[self.rows, : self.extent]

    def write(self, k: Tensor, v: Tensor, batch: StepBatch) -> None:
        """Store the new k, v [B, T, H_kv, D] at their positions."""
        if batch.start is not None:
            end = batch.start + k.shape[1]
            self.k_all[self.rows, batch.start : end] = k
            self.v_all[self.rows, batch.start : end] = v
            return
        # decode: one token per row, each at its own position (tensor indices, graph-safe)
        assert batch.row_ids is not None, "decode steps carry their row ids"
        where = (batch.row_ids, batch.positions[:, 0])
        self.k_all.index_put_(where, k[:, 0])
        self.v_all.index_put_(where, v[:, 0])


class KVStore(Protocol):
    """What the model needs from a KV cache (workers.kv_cache.KVCache implements it)."""

    def layer(self, index: int, rows: slice, extent: int) -> LayerKV: ...


class AttentionBackend(ABC):
    """Computes attention for one layer from q and the layer's KV cache. See module doc."""

    def new_layer_state(
        self, layer: int, rows: int, max_seq_len: int, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """Per-layer extra cache state for `rows` sequences (dense: none)."""
        return None

    def copy_row(self, state: Any, src: int, dst: int, length: int) -> None:
        """Mirror a cache-row move (the engine compacts rows when sequences finish)."""
        return None

    def prepare(self, batch: StepBatch) -> StepBatch:
        """Per-step work shared by all layers (masks, block tables); returns the batch."""
        return batch

    @abstractmethod
    def forward(self, q: Tensor, kv: LayerKV, batch: StepBatch, layer: int) -> Tensor:
        """q [B, T, H, D] -> output [B, T, H, D]."""


class DenseAttention(AttentionBackend):
    """Exact causal attention over the cache.

    Prefill: PyTorch SDPA (flash on CUDA), causal over the new tokens and bottom-right
    aligned after a cached prefix. Decode on CUDA: our split-KV Triton kernel
    (`kernels.dense.gqa_decode`), reading exactly kv_len[b] keys per row (graph-safe);
    FlashAttention-2 varlen (`flash.flash_decode`) for head dims it does not tile.
    Decode elsewhere: SDPA with the G query heads of a KV head as G query rows of one
    call and a length mask.
    """

    def __init__(self, config: ModelConfig, triton: bool | None = None) -> None:
        """`triton`: decode with the Triton kernel; None: on CUDA (tests force it on CPU)."""
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.triton = triton

    def prepare(self, batch: StepBatch) -> StepBatch:
        return replace(batch, plan=_StepPlan(batch.kv_len, batch.extent))

    def forward(self, q: Tensor, kv: LayerKV, batch: StepBatch, layer: int) -> Tensor:
        if batch.start is not None:
            return self._prefill(q, kv.keys(), kv.values(), batch.start)
        plan: _StepPlan = batch.plan
        k_rows, v_rows = kv.k_all[kv.rows], kv.v_all[kv.rows]
        if self._triton_decode(q):
            size = q.shape[0]
            q_rows = q.reshape(size, self.num_heads, self.head_dim).contiguous()
            out = gqa_decode(q_rows, k_rows, v_rows, batch.kv_len, batch.extent)
            return out.view(size, 1, self.num_heads, self.head_dim)
        if flash_supported(q):
            return flash_decode(q, k_rows, v_rows, batch.kv_len, batch.extent, plan.offsets)
        return self._decode(q, kv.keys(), kv.values(), plan.mask())

    def _triton_decode(self, q: Tensor) -> bool:
        wanted = q.is_cuda if self.triton is None else self.triton
        return wanted and gqa_decode_supported(self.num_heads, self.num_kv_heads, self.head_dim)

    def _prefill(self, q: Tensor, k: Tensor, v: Tensor, start: int) -> Tensor:
        """q [B, T, H, D], k/v [B, S, H_kv, D] with S = start + T."""
        length = q.shape[1]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if start == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            mask = causal_lower_right(length, start + length)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return out.transpose(1, 2)

    def _decode(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """q [B, 1, H, D] against k/v [B, S, H_kv, D] where mask [B, 1, 1, S] is True."""
        size, heads, dim = q.shape[0], self.num_heads, self.head_dim
        grouped = q.reshape(size, self.num_kv_heads, heads // self.num_kv_heads, dim)
        out = F.scaled_dot_product_attention(
            grouped, k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        )  # [B, H_kv, G, D]
        return out.reshape(size, 1, heads, dim)


class _StepPlan:
    """Per-step tensors every layer shares, built on first use (also inside a graph capture)."""

    def __init__(self, kv_len: Tensor, extent: int) -> None:
        self.kv_len = kv_len
        self.extent = extent
        self._offsets: dict[int, Tensor] = {}
        self._mask: Tensor | None = None

    def offsets(self, step: int) -> Tensor:
        """int32 [B + 1]: 0, step, 2 * step, ..."""
        if step not in self._offsets:
            count = self.kv_len.shape[0] + 1
            base = torch.arange(count, dtype=torch.int32, device=self.kv_len.device)
            self._offsets[step] = base * step
        return self._offsets[step]

    def mask(self) -> Tensor:
        """[B, 1, 1, S] bool: key j of row b is one of its kv_len[b]."""
        if self._mask is None:
            span = torch.arange(self.extent, device=self.kv_len.device)
            self._mask = (span.unsqueeze(0) < self.kv_len.unsqueeze(1))[:, None, None, :]
        return self._mask
