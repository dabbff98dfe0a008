"""One decode step for cache rows [0, B): eager, or replayed from a CUDA graph.

On CUDA the whole step (embedding, every layer, final norm, lm_head) is captured once per
(batch bucket, extent bucket) and replayed with static input buffers: a few hundred small
kernels launch as one, which is what makes batch-1 decode memory-bound instead of
launch-bound. Padding rows of a bucket write only into free cache rows at position 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nsa_assist.model.attention import StepBatch
from nsa_assist.model.transformer import Transformer

from .kv_cache import KVCache

MIN_GRAPH_EXTENT = 256  # smallest KV extent bucket; buckets double up to max_seq_len
GRAPH_WARMUP_STEPS = 2  # eager runs on a side stream before capture (lazy init, autotune)


def batch_buckets(max_batch_size: int) -> list[int]:
    """Powers of two below max_batch_size, then max_batch_size itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


def extent_bucket(length: int, max_seq_len: int) -> int:
    """Smallest doubling of MIN_GRAPH_EXTENT covering `length`, capped at max_seq_len."""
    extent = MIN_GRAPH_EXTENT
    while extent < length:
        extent *= 2
    return min(extent, max_seq_len)


class EagerDecoder:
    """Runs the decode step directly (CPU, or CUDA without graphs)."""

    def __init__(self, model: Transformer, cache: KVCache) -> None:
        self.model = model
        self.cache = cache

    def step(self, tokens: Tensor, positions: Tensor, longest: int) -> Tensor:
        """tokens, positions [B] int64 on the model's device -> logits [B, V] float32.

        `longest` is the largest kv length after this step (max(positions) + 1).
        """
        batch = StepBatch.decode(positions, extent=longest)
        logits = self.model(tokens.unsqueeze(1), batch, self.cache, logits="last")
        assert logits is not None
        return logits


@dataclass(slots=True)
class _Graph:
    graph: torch.cuda.CUDAGraph
    logits: Tensor  # [bucket, V], written by every replay


class GraphDecoder:
    """Replays a CUDA graph of the decode step; captures each bucket on first use."""

    def __init__(self, model: Transformer, cache: KVCache, max_batch_size: int) -> None:
        self.model = model
        self.cache = cache
        self.buckets = batch_buckets(max_batch_size)
        device = cache.k[0].device
        self.tokens = torch.zeros(max_batch_size, dtype=torch.int64, device=device)
        self.positions = torch.zeros(max_batch_size, dtype=torch.int64, device=device)
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple[int, int], _Graph] = {}

    def step(self, tokens: Tensor, positions: Tensor, longest: int) -> Tensor:
        """Same contract as `EagerDecoder.step`."""
        size = tokens.shape[0]
        bucket = next(b for b in self.buckets if b >= size)
        extent = extent_bucket(longest, self.cache.max_seq_len)
        self.tokens[:size].copy_(tokens)
        self.positions[:size].copy_(positions)
        self.tokens[size:bucket].zero_()
        self.positions[size:bucket].zero_()
        key = (bucket, extent)
        if key not in self.graphs:
            # the step is idempotent for fixed inputs, so capturing it mid-generation with
            # the real inputs in place (warm-up runs included) changes nothing
            self.graphs[key] = self._capture(bucket, extent)
        entry = self.graphs[key]
        entry.graph.replay()
        return entry.logits[:size]

    def _run(self, bucket: int, extent: int) -> Tensor:
        batch = StepBatch.decode(self.positions[:bucket], extent=extent)
        logits = self.model(self.tokens[:bucket].unsqueeze(1), batch, self.cache, logits="last")
        assert logits is not None
        return logits

    def _capture(self, bucket: int, extent: int) -> _Graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self._run(bucket, extent)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self._run(bucket, extent)
        return _Graph(graph, logits)
