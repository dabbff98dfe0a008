"""Combining the branches: gated sum (paper) or log-sum-exp merge (union), forward and backward.

Row-wise over the N*H rows of [N, H, Dv] outputs, in float32 registers; one pass each way.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ROWS_PER_PROGRAM = 32


@triton.jit
def _combine_fwd_kernel(
    o_a, o_b, o_c, gates, lse_a, lse_b, out, lse_out, R,
    DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr, UNION: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    c = tl.arange(0, BDV)
    rm = r < R
    m = rm[:, None] & (c[None, :] < DV)
    off = r.to(tl.int64)[:, None] * DV + c[None, :]
    a = tl.load(o_a + off, mask=m, other=0.0).to(tl.float32)
    b = tl.load(o_b + off, mask=m, other=0.0).to(tl.float32)
    if UNION:
        la = tl.load(lse_a + r, mask=rm, other=float("-inf"))
        lb = tl.load(lse_b + r, mask=rm, other=float("-inf"))
        mx = tl.maximum(la, lb)
        mx = tl.where(mx == float("-inf"), 0.0, mx)
        wa = tl.exp(la - mx)
        wb = tl.exp(lb - mx)
        tot = wa + wb
        o = (wa[:, None] * a + wb[:, None] * b) / tl.where(tot > 0, tot, 1.0)[:, None]
        lse = tl.where(tot > 0, mx + tl.log(tl.where(tot > 0, tot, 1.0)), float("-inf"))
        tl.store(lse_out + r, lse, mask=rm)
    else:
        x = tl.load(o_c + off, mask=m, other=0.0).to(tl.float32)
        g0 = tl.load(gates + r * 3, mask=rm, other=0.0).to(tl.float32)
        g1 = tl.load(gates + r * 3 + 1, mask=rm, other=0.0).to(tl.float32)
        g2 = tl.load(gates + r * 3 + 2, mask=rm, other=0.0).to(tl.float32)
        o = g0[:, None] * x + g1[:, None] * a + g2[:, None] * b
    tl.store(out + off, o.to(out.dtype.element_ty), mask=m)


@triton.jit
def _gated_bwd_kernel(
    do, o_cmp, o_slc, o_win, gates, d_cmp, d_slc, d_win, dgates, delta, R,
    DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    c = tl.arange(0, BDV)
    rm = r < R
    m = rm[:, None] & (c[None, :] < DV)
    off = r.to(tl.int64)[:, None] * DV + c[None, :]
    b_do = tl.load(do + off, mask=m, other=0.0).to(tl.float32)
    for k in tl.static_range(3):
        if k == 0:
            src, dst = o_cmp, d_cmp
        elif k == 1:
            src, dst = o_slc, d_slc
        else:
            src, dst = o_win, d_win
        g = tl.load(gates + r * 3 + k, mask=rm, other=0.0).to(tl.float32)
        dg = tl.sum(b_do * tl.load(src + off, mask=m, other=0.0).to(tl.float32), 1)
        tl.store(dst + off, (g[:, None] * b_do).to(dst.dtype.element_ty), mask=m)
        tl.store(dgates + r * 3 + k, dg, mask=rm)
        tl.store(delta + k * R + r, g * dg, mask=rm)  # rowsum(g*do * o) of this branch


def _grid(R: int) -> tuple[int]:
    return (triton.cdiv(R, ROWS_PER_PROGRAM),)


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def gated_combine(
    o_cmp: torch.Tensor, o_slc: torch.Tensor, o_win: torch.Tensor, gates: torch.Tensor
) -> torch.Tensor:
    """o = g_cmp * o_cmp + g_slc * o_slc + g_win * o_win; o_* [N, H, Dv], gates [N, H, 3]."""
    out = torch.empty_like(o_slc)
    R, DV = o_slc.shape[0] * o_slc.shape[1], o_slc.shape[2]
    _combine_fwd_kernel[_grid(R)](
        o_slc, o_win, o_cmp, gates, o_slc, o_slc, out, out, R,
        DV=DV, BDV=_pad(DV), BR=ROWS_PER_PROGRAM, UNION=False,
    )  # fmt: skip
    return out


def union_merge(
    o_a: torch.Tensor, lse_a: torch.Tensor, o_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One softmax over two disjoint key sets from their partial results: o [N, H, Dv], lse."""
    out = torch.empty_like(o_a)
    lse = torch.empty_like(lse_a)
    R, DV = o_a.shape[0] * o_a.shape[1], o_a.shape[2]
    _combine_fwd_kernel[_grid(R)](
        o_a, o_b, o_a, o_a, lse_a, lse_b, out, lse, R,
        DV=DV, BDV=_pad(DV), BR=ROWS_PER_PROGRAM, UNION=True,
    )  # fmt: skip
    return out, lse


def gated_combine_bwd(
    do: torch.Tensor, branches: tuple[torch.Tensor, ...], gates: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-branch output gradients g_c * do (do's dtype), dgates [N, H, 3] and the three
    branches' delta = rowsum(g_c * do * o_c) [3, N, H] (fp32)."""
    N, H, DV = do.shape
    d_branch = [torch.empty_like(do) for _ in range(3)]
    dgates = torch.empty(N, H, 3, device=do.device, dtype=torch.float32)
    delta = torch.empty(3, N, H, device=do.device, dtype=torch.float32)
    _gated_bwd_kernel[_grid(N * H)](
        do, *branches, gates, *d_branch, dgates, delta, N * H,
        DV=DV, BDV=_pad(DV), BR=ROWS_PER_PROGRAM,
    )  # fmt: skip
    return d_branch, dgates, delta


@triton.jit
def _merge_splits_kernel(
    o, lse, out, lse_out, S, R,
    DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr, WITH_O: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    c = tl.arange(0, BDV)
    rm = r < R
    m = rm[:, None] & (c[None, :] < DV)
    mx = tl.full([BR], float("-inf"), tl.float32)
    for s in range(S):
        mx = tl.maximum(mx, tl.load(lse + s * R + r, mask=rm, other=float("-inf")))
    safe = tl.where(mx == float("-inf"), 0.0, mx)
    tot = tl.zeros([BR], dtype=tl.float32)
    acc = tl.zeros([BR, BDV], dtype=tl.float32)
    for s in range(S):
        w = tl.exp(tl.load(lse + s * R + r, mask=rm, other=float("-inf")) - safe)
        tot += w
        if WITH_O:
            off = (s * R + r).to(tl.int64)[:, None] * DV + c[None, :]
            acc += w[:, None] * tl.load(o + off, mask=m, other=0.0).to(tl.float32)
    ok = tot > 0
    tl.store(lse_out + r, tl.where(ok, safe + tl.log(tl.where(ok, tot, 1.0)), mx), mask=rm)
    if WITH_O:
        off = r.to(tl.int64)[:, None] * DV + c[None, :]
        tl.store(out + off, acc / tl.where(ok, tot, 1.0)[:, None], mask=m)


def merge_splits(
    o: torch.Tensor | None, lse: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Flash-decoding reduction of S partial results, o [S, N, H, Dv] (or None: the
    log-sum-exp alone), lse [S, N, H] -> (o [N, H, Dv] fp32, lse [N, H]). One Triton pass
    instead of ~6 PyTorch kernels per merge (decode runs four merges a step)."""
    S, R = lse.shape[0], lse[0].numel()
    lse_out = torch.empty(lse.shape[1:], device=lse.device, dtype=torch.float32)
    out = None if o is None else torch.empty(o.shape[1:], device=o.device, dtype=torch.float32)
    DV = 1 if o is None else o.shape[-1]
    _merge_splits_kernel[_grid(R)](
        lse if o is None else o.contiguous(), lse.contiguous(), lse_out if out is None else out,
        lse_out, S, R, DV=DV, BDV=_pad(DV), BR=ROWS_PER_PROGRAM, WITH_O=o is not None,
    )  # fmt: skip
    return out, lse_out


def merge_splits_torch(o: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """merge_splits in PyTorch, the tests' reference."""
    total = torch.logsumexp(lse, dim=0)
    safe = torch.where(total == float("-inf"), 0.0, total)
    w = torch.exp(lse - safe)[..., None]
    return (w * o.float()).sum(0), total


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """delta = rowsum(a * b) in float32: [N, H, D] x [N, H, D] -> [N, H]."""
    return (a.float() * b.float()).sum(-1)
