"""Compression φ over blocks of l keys with stride d (Eq. 7): block views and the `mean` kind.

The learnable `mlp` kind lives in module.py (it has parameters); both read the same blocks.
"""

from __future__ import annotations

import itertools

import torch

from .config import NSAConfig


def block_view(x: torch.Tensor, cu_seqlens: list[int], cfg: NSAConfig) -> torch.Tensor:
    """All complete compression blocks, packed: x [N, H_kv, D] -> [N_cmp, H_kv, l, D]."""
    parts = []
    for a, b in itertools.pairwise(cu_seqlens):
        if b - a >= cfg.cmp_block:
            parts.append(x[a:b].unfold(0, cfg.cmp_block, cfg.cmp_stride).transpose(-1, -2))
    if not parts:
        return x.new_zeros(0, x.shape[1], cfg.cmp_block, x.shape[2])
    return torch.cat(parts)


def compress_mean(x: torch.Tensor, cu_seqlens: list[int], cfg: NSAConfig) -> torch.Tensor:
    """Mean of each block: x [N, H_kv, D] -> [N_cmp, H_kv, D], packed like cu_seqlens."""
    parts = [
        x[a:b].unfold(0, cfg.cmp_block, cfg.cmp_stride).mean(dim=-1)
        for a, b in itertools.pairwise(cu_seqlens)
        if b - a >= cfg.cmp_block
    ]
    return torch.cat(parts) if parts else x.new_zeros(0, *x.shape[1:])
