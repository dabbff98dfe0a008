"""Per-sequence offsets shared by every kernel: packed prefill and padded decode caches alike.

A sequence b has q_len[b] queries stored from row q_start[b] of q, at absolute positions
q_pos0[b] .. q_pos0[b] + q_len[b] - 1; its keys sit from row k_start[b] of k/v (key s at row
k_start[b] + s) and its compressed tokens from row c_start[b] of kc/vc. Prefill has
q_pos0 = 0 and q_start = k_start; decode has q_len = 1 and q_pos0 = length - 1.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch
import triton
import triton.language as tl

from .config import NSAConfig


@dataclass(frozen=True)
class SeqMeta:
    """Device tensors (int32, [B]) and host lengths for grid sizes.

    For decode the host k_lens/c_lens are the cache capacities (upper bounds), so building it
    needs no device-to-host copy and a decode step can be captured in a CUDA graph; its
    query tiles (one per sequence) come with it in tile_seq / tile_i0.
    """

    q_start: torch.Tensor
    q_len: torch.Tensor
    q_pos0: torch.Tensor
    k_start: torch.Tensor
    c_start: torch.Tensor
    c_len: torch.Tensor
    q_lens: tuple[int, ...]
    k_lens: tuple[int, ...]
    c_lens: tuple[int, ...]
    single_query: bool = False
    tile_seq: torch.Tensor | None = None
    tile_i0: torch.Tensor | None = None
    _derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def batch(self) -> int:
        return len(self.q_lens)

    def derived(self, key: Hashable, build: Callable[[], object]):
        """What `build` makes from this meta (tiles, lengths on the device), made once: the
        forward and backward of one call launch ~10 kernels over the same few tilings."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]


def to_device(host: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on `device` without a sync: from pinned memory, copied asynchronously.

    torch.tensor(values, device="cuda") copies from pageable memory, which waits for the
    stream to drain: one such copy per kernel launch kept the CPU from queueing ahead (on the
    H200 at 64k, qwen-1.5b: 4 ms of the backward's 32 between kernels)."""
    if torch.device(device).type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def device_i32(values, device) -> torch.Tensor:
    """Host ints (a list, or a list of equal-length rows) as int32 on `device`, no sync."""
    return to_device(torch.tensor(values, dtype=torch.int32), device)


def _starts(lengths) -> list[int]:
    out, acc = [], 0
    for n in lengths:
        out.append(acc)
        acc += n
    return out


# prefill metas kept for reuse: a model's layers (and a training loop's steps) call the op
# with the same cu_seqlens, and each new meta rebuilt its offsets and tiles on the host and
# copied them up (H200, qwen-1.5b at 8k: ~0.35 ms of a forward's 1.8 ms enqueue)
PREFILL_METAS = 32
_prefill_metas: OrderedDict[Hashable, SeqMeta] = OrderedDict()


def prefill_meta(cu_seqlens: list[int], cfg: NSAConfig, device) -> SeqMeta:
    """Packed sequences given by cu_seqlens (host list [B+1]); compressed tokens packed alike.

    The same (cu_seqlens, compression, device and stream) returns the same SeqMeta, with the
    tiles and lengths derived from it so far (they depend on the lengths only). Per stream:
    its tensors are written and freed in that stream's order, so another stream gets its own.
    Not while a CUDA graph is being captured: a meta made there holds values only the graph's
    replays write."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda and torch.cuda.is_current_stream_capturing():
        return _new_prefill_meta(cu_seqlens, cfg, device)
    # a CUDA stream compares and hashes by its handle and device (an index-less "cuda" is
    # the current device's)
    where = torch.cuda.current_stream(device) if cuda else device
    key = (tuple(cu_seqlens), cfg.cmp_block, cfg.cmp_stride, where)
    if key in _prefill_metas:
        _prefill_metas.move_to_end(key)
        return _prefill_metas[key]
    meta = _prefill_metas[key] = _new_prefill_meta(cu_seqlens, cfg, device)
    if len(_prefill_metas) > PREFILL_METAS:
        _prefill_metas.popitem(last=False)
    return meta


def _new_prefill_meta(cu_seqlens: list[int], cfg: NSAConfig, device) -> SeqMeta:
    lens = [b - a for a, b in itertools.pairwise(cu_seqlens)]
    c_lens = [cfg.num_compressed(n) for n in lens]
    starts = list(cu_seqlens[:-1])
    # SeqMeta's six device rows, in field order, in one copy up
    rows = [starts, lens, [0] * len(lens), starts, _starts(c_lens), c_lens]
    return SeqMeta(
        *device_i32(rows, device).unbind(0),
        q_lens=tuple(lens),
        k_lens=tuple(lens),
        c_lens=tuple(c_lens),
    )


@triton.jit
def _decode_meta_kernel(
    lengths, out, B, cache_len, cmp_cache_len,
    CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr, BB: tl.constexpr,
):  # fmt: skip
    """out [7, B] int32: q_start (also each tile's sequence), q_len, q_pos0, k_start, c_start,
    c_len, tile_i0."""
    b = tl.program_id(0) * BB + tl.arange(0, BB)
    m = b < B
    n = tl.load(lengths + b, mask=m, other=1)
    n_cmp = tl.where(n >= CMP_BLOCK, (n - CMP_BLOCK) // CMP_STRIDE + 1, 0)
    tl.store(out + b, b, mask=m)
    tl.store(out + B + b, b * 0 + 1, mask=m)
    tl.store(out + 2 * B + b, n - 1, mask=m)
    tl.store(out + 3 * B + b, b * cache_len, mask=m)
    tl.store(out + 4 * B + b, b * cmp_cache_len, mask=m)
    tl.store(out + 5 * B + b, n_cmp, mask=m)
    tl.store(out + 6 * B + b, b * 0, mask=m)


def decode_meta(
    lengths: torch.Tensor, cache_len: int, cmp_cache_len: int, cfg: NSAConfig
) -> SeqMeta:
    """One query per sequence at position lengths[b] - 1 (lengths: int32 [B] on the device);
    caches padded to cache_len / cmp_cache_len rows per sequence. One small kernel (it was
    eight torch ops, each a node of a decode step's CUDA graph) and no sync."""
    B = lengths.shape[0]
    out = torch.empty(7, B, device=lengths.device, dtype=torch.int32)
    BB = min(1024, max(16, triton.next_power_of_2(B)))
    _decode_meta_kernel[(triton.cdiv(B, BB),)](
        lengths, out, B, cache_len, cmp_cache_len,
        CMP_BLOCK=cfg.cmp_block, CMP_STRIDE=cfg.cmp_stride, BB=BB,
    )  # fmt: skip
    *rows, tile_i0 = out.unbind(0)  # SeqMeta's six device rows, in field order
    return SeqMeta(
        *rows,
        q_lens=(1,) * B,
        k_lens=(cache_len,) * B,
        c_lens=(cmp_cache_len,) * B,
        single_query=True,
        tile_seq=rows[0],  # q_start: one tile per sequence, tile b is sequence b
        tile_i0=tile_i0,
    )


def cmp_cu_seqlens(cu_seqlens: list[int], cfg: NSAConfig) -> list[int]:
    """Offsets of each sequence's compressed tokens when packed like cu_seqlens."""
    lens = [cfg.num_compressed(b - a) for a, b in itertools.pairwise(cu_seqlens)]
    return [*_starts(lens), sum(lens)]


def query_tiles(meta: SeqMeta, rows_per_tile: int, device) -> tuple[torch.Tensor, ...]:
    """Query tiles of a SeqMeta (one per sequence for decode, built on the device)."""
    if meta.single_query:
        return meta.tile_seq, meta.tile_i0
    return meta.derived(
        ("tiles", meta.q_lens, rows_per_tile),
        lambda: make_tiles(meta.q_lens, rows_per_tile, device),
    )


def make_tiles(lengths: tuple[int, ...], rows_per_tile: int, device) -> tuple[torch.Tensor, ...]:
    """Tiles of `rows_per_tile` consecutive rows that never straddle two sequences.

    Returns tile_seq [n_tiles] and tile_i0 [n_tiles] (first row within its sequence), int32,
    built on the host (a few vector ops) and copied in one asynchronous transfer.
    """
    counts = torch.tensor([-(-n // rows_per_tile) for n in lengths], dtype=torch.int64)
    total = int(counts.sum())
    seq = torch.repeat_interleave(torch.arange(len(lengths)), counts, output_size=total)
    first_tile = torch.cumsum(counts, 0) - counts
    i0 = (torch.arange(total) - first_tile[seq]) * rows_per_tile
    tiles = to_device(torch.stack((seq, i0)).to(torch.int32), device)
    return tiles[0], tiles[1]
