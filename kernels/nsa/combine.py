"""Combining the branches: gated sum (paper) or log-sum-exp merge (union), forward and backward.

Elementwise over [N, H, Dv]; done in float32 and cast back to the output dtype.
"""

from __future__ import annotations

import torch


def gated_combine(
    o_cmp: torch.Tensor, o_slc: torch.Tensor, o_win: torch.Tensor, gates: torch.Tensor
) -> torch.Tensor:
    """o = g_cmp * o_cmp + g_slc * o_slc + g_win * o_win; o_* [N, H, Dv], gates [N, H, 3]."""
    g = gates.float()
    o = g[..., 0:1] * o_cmp.float() + g[..., 1:2] * o_slc.float() + g[..., 2:3] * o_win.float()
    return o.to(o_slc.dtype)


def gated_combine_bwd(
    do: torch.Tensor, branches: tuple[torch.Tensor, ...], gates: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-branch output gradients g_c * do (in do's dtype) and dgates [N, H, 3] (fp32)."""
    do32 = do.float()
    d_branch = [(gates[..., c : c + 1].float() * do32).to(do.dtype) for c in range(3)]
    dgates = torch.stack([(do32 * o.float()).sum(-1) for o in branches], dim=-1)
    return d_branch, dgates


def union_merge(
    o_a: torch.Tensor, lse_a: torch.Tensor, o_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One softmax over two disjoint key sets from their partial results: o [N, H, Dv], lse."""
    lse = torch.logaddexp(lse_a, lse_b)
    safe = torch.where(lse == float("-inf"), 0.0, lse)
    o = torch.exp(lse_a - safe)[..., None] * o_a.float() + torch.exp(lse_b - safe)[..., None] * (
        o_b.float()
    )
    return o.to(o_a.dtype), lse


def merge_splits(o: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flash-decoding reduction of S partial results: o [S, N, H, Dv], lse [S, N, H]."""
    total = torch.logsumexp(lse, dim=0)
    safe = torch.where(total == float("-inf"), 0.0, total)
    w = torch.exp(lse - safe)[..., None]
    return (w * o.float()).sum(0), total


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """delta = rowsum(a * b) in float32: [N, H, D] x [N, H, D] -> [N, H]."""
    return (a.float() * b.float()).sum(-1)
