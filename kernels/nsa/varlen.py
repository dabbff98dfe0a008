"""Per-sequence offsets shared by every kernel: packed prefill and padded decode caches alike.

A sequence b has q_len[b] queries stored from row q_start[b] of q, at absolute positions
q_pos0[b] .. q_pos0[b] + q_len[b] - 1; its keys sit from row k_start[b] of k/v (key s at row
k_start[b] + s) and its compressed tokens from row c_start[b] of kc/vc. Prefill has
q_pos0 = 0 and q_start = k_start; decode has q_len = 1 and q_pos0 = length - 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .config import NSAConfig


@dataclass(frozen=True)
class SeqMeta:
    """Device tensors (int32, [B]) and host lengths for grid sizes.

    For decode the host k_lens/c_lens are the cache capacities (upper bounds), so building it
    needs no device-to-host copy and a decode step can be captured in a CUDA graph.
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

    @property
    def batch(self) -> int:
        return len(self.q_lens)


def _i32(values, device) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.int32, device=device)


def _starts(lengths) -> list[int]:
    out, acc = [], 0
    for n in lengths:
        out.append(acc)
        acc += n
    return out


def prefill_meta(cu_seqlens: list[int], cfg: NSAConfig, device) -> SeqMeta:
    """Packed sequences given by cu_seqlens (host list [B+1]); compressed tokens packed alike."""
    lens = [b - a for a, b in itertools.pairwise(cu_seqlens)]
    c_lens = [cfg.num_compressed(n) for n in lens]
    return SeqMeta(
        q_start=_i32(cu_seqlens[:-1], device),
        q_len=_i32(lens, device),
        q_pos0=_i32([0] * len(lens), device),
        k_start=_i32(cu_seqlens[:-1], device),
        c_start=_i32(_starts(c_lens), device),
        c_len=_i32(c_lens, device),
        q_lens=tuple(lens),
        k_lens=tuple(lens),
        c_lens=tuple(c_lens),
    )


def decode_meta(
    lengths: torch.Tensor, cache_len: int, cmp_cache_len: int, cfg: NSAConfig
) -> SeqMeta:
    """One query per sequence at position lengths[b] - 1 (lengths: int32 [B] on the device);
    caches padded to cache_len / cmp_cache_len rows per sequence. Device ops only."""
    B = lengths.shape[0]
    seq = torch.arange(B, device=lengths.device, dtype=torch.int32)
    n_cmp = torch.where(
        lengths >= cfg.cmp_block, (lengths - cfg.cmp_block) // cfg.cmp_stride + 1, 0
    ).to(torch.int32)
    return SeqMeta(
        q_start=seq,
        q_len=torch.ones_like(seq),
        q_pos0=(lengths - 1).to(torch.int32),
        k_start=seq * cache_len,
        c_start=seq * cmp_cache_len,
        c_len=n_cmp,
        q_lens=(1,) * B,
        k_lens=(cache_len,) * B,
        c_lens=(cmp_cache_len,) * B,
        single_query=True,
    )


def cmp_cu_seqlens(cu_seqlens: list[int], cfg: NSAConfig) -> list[int]:
    """Offsets of each sequence's compressed tokens when packed like cu_seqlens."""
    lens = [cfg.num_compressed(b - a) for a, b in itertools.pairwise(cu_seqlens)]
    return [*_starts(lens), sum(lens)]


def query_tiles(meta: SeqMeta, rows_per_tile: int, device) -> tuple[torch.Tensor, ...]:
    """Query tiles of a SeqMeta (one per sequence for decode, built on the device)."""
    if meta.single_query:
        seq = torch.arange(meta.batch, device=device, dtype=torch.int32)
        return seq, torch.zeros_like(seq)
    return make_tiles(meta.q_lens, rows_per_tile, device)


def make_tiles(lengths: tuple[int, ...], rows_per_tile: int, device) -> tuple[torch.Tensor, ...]:
    """Tiles of `rows_per_tile` consecutive rows that never straddle two sequences.

    Returns tile_seq [n_tiles] and tile_i0 [n_tiles] (first row within its sequence), int32,
    built on the device from B host counts (no per-tile Python work).
    """
    counts = [-(-n // rows_per_tile) for n in lengths]
    total = sum(counts)
    counts_t = torch.tensor(counts, device=device)
    seq = torch.repeat_interleave(
        torch.arange(len(lengths), device=device), counts_t, output_size=total
    )
    first_tile = torch.cumsum(counts_t, 0) - counts_t
    i0 = (torch.arange(total, device=device) - first_tile[seq]) * rows_per_tile
    return seq.to(torch.int32), i0.to(torch.int32)
