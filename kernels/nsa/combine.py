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


MERGE_SPLITS_PER_STEP = 16
# rows (query heads) per program of decode_combine: bench/kernels.py --parts decode_combine
# (H200, 64k): 1 row is the fastest at batch 1 (paper 0.038 vs 0.048 ms a step with 4 rows,
# qwen-1.5b 0.033 vs 0.043) and within 1-2% of the best at batch 32
DECODE_COMBINE_ROWS = 1
# Dv columns per program (a power of two >= 16; the whole row when wider than Dv) and warps:
# --parts decode_combine --sweep cols (16..128 x 1, 4 warps): 64 on 1 warp was within the
# noise of the best for every config and batch (qwen-1.5b batch 32 0.0759-0.0775 -> 0.0738
# ms, the kernel 4.8 -> 2.3 us); 16 columns cost the paper config 5% at batch 32
DECODE_COMBINE_WARPS = 1
DECODE_COMBINE_COLS = 64


@triton.jit
def _merge_rows(o, lse, r, rm, R, c,
                S: tl.constexpr, DV: tl.constexpr, BS: tl.constexpr):  # fmt: skip
    """Rows r [BR] of S split partial results, o [S, R, DV] and lse [S, R], merged by their
    log-sum-exp (flash-decoding): (o [BR, BDV] fp32, lse [BR]). BS splits a step, unrolled (S
    is known when compiling) so every load is issued up front; rescaled online as in flash
    attention. A row no split saw gives zeros and -inf."""
    si = tl.arange(0, BS)
    m = tl.full(r.shape, float("-inf"), tl.float32)
    tot = tl.zeros(r.shape, dtype=tl.float32)
    acc = tl.zeros([r.shape[0], c.shape[0]], dtype=tl.float32)
    for s0 in tl.static_range(0, S, BS):
        sm = (s0 + si < S)[:, None] & rm[None, :]  # [BS, BR]
        part = (s0 + si).to(tl.int64)[:, None] * R + r[None, :]
        b_lse = tl.load(lse + part, mask=sm, other=float("-inf"))
        b_o = tl.load(o + part[:, :, None] * DV + c[None, None, :],
                      mask=sm[:, :, None] & (c < DV)[None, None, :], other=0.0)  # fmt: skip
        m_new = tl.maximum(m, tl.max(b_lse, 0))
        safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m - safe)
        w = tl.exp(b_lse - safe[None, :])  # [BS, BR]
        tot = tot * alpha + tl.sum(w, 0)
        acc = acc * alpha[:, None] + tl.sum(w[:, :, None] * b_o.to(tl.float32), 0)
        m = m_new
    ok = tot > 0
    out = acc / tl.where(ok, tot, 1.0)[:, None]
    return out, tl.where(ok, tl.where(ok, m, 0.0) + tl.log(tl.where(ok, tot, 1.0)), m)


@triton.jit
def _decode_combine_kernel(
    o_cmp, lse_cmp, o_slc, lse_slc, o_win, lse_win,  # o_* [S_*, R, DV], lse_* [S_*, R]
    gates, out, R,  # gates [R, 3]; out [R, DV]
    S_CMP: tl.constexpr, S_SLC: tl.constexpr, S_WIN: tl.constexpr,
    DV: tl.constexpr, BDV: tl.constexpr, BS: tl.constexpr, BR: tl.constexpr,
    UNION: tl.constexpr,
):  # fmt: skip
    """Grid (row blocks, column blocks): BR rows x BDV of the DV columns a program."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    rm = r < R
    c = tl.program_id(1) * BDV + tl.arange(0, BDV)
    a, la = _merge_rows(o_slc, lse_slc, r, rm, R, c, S_SLC, DV, BS)
    b, lb = _merge_rows(o_win, lse_win, r, rm, R, c, S_WIN, DV, BS)
    if UNION:  # one softmax over the (disjoint) selected and window keys
        mx = tl.maximum(la, lb)
        mx = tl.where(mx == float("-inf"), 0.0, mx)
        wa = tl.exp(la - mx)
        wb = tl.exp(lb - mx)
        tot = tl.where(wa + wb > 0, wa + wb, 1.0)
        o = (wa[:, None] * a + wb[:, None] * b) / tot[:, None]
    else:
        x, _ = _merge_rows(o_cmp, lse_cmp, r, rm, R, c, S_CMP, DV, BS)
        g0 = tl.load(gates + r * 3, mask=rm, other=0.0).to(tl.float32)
        g1 = tl.load(gates + r * 3 + 1, mask=rm, other=0.0).to(tl.float32)
        g2 = tl.load(gates + r * 3 + 2, mask=rm, other=0.0).to(tl.float32)
        o = g0[:, None] * x + g1[:, None] * a + g2[:, None] * b
    ptr = out + r.to(tl.int64)[:, None] * DV + c[None, :]
    tl.store(ptr, o.to(out.dtype.element_ty), mask=rm[:, None] & (c < DV)[None, :])


Parts = tuple[torch.Tensor | None, torch.Tensor]  # o [S, N, H, Dv] (or None), lse [S, N, H]


def decode_combine(
    cmp: Parts, slc: Parts, win: Parts, gates: torch.Tensor | None, union: bool,
    out_dtype: torch.dtype, rows_per_program: int | None = None,
    cols_per_program: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """A decode step's output o [N, H, Dv] from each branch's split partial results (each
    merged by its log-sum-exp), gated (gates [N, H, 3]) or, with union, as one softmax over
    the selected and window keys (cmp unused). One launch where a merge per branch and a
    combine took four to five (~26 us of a 238 us step: paper config, batch 32, H200).
    rows_per_program / cols_per_program (of Dv): default DECODE_COMBINE_ROWS / _COLS; they and
    DECODE_COMBINE_WARPS are read at each call (bench/kernels.py's sweep sets them)."""
    o_slc, lse_slc = slc
    N, H, DV = o_slc.shape[1:]
    out = torch.empty(N, H, DV, device=o_slc.device, dtype=out_dtype)
    o_cmp, lse_cmp = cmp if not union else (o_slc, lse_slc)
    assert o_cmp is not None and (union or gates is not None), "gated needs o_cmp and gates"
    splits = (lse_cmp.shape[0], lse_slc.shape[0], win[1].shape[0])
    BS = min(MERGE_SPLITS_PER_STEP, triton.next_power_of_2(max(splits)))
    BR = rows_per_program or DECODE_COMBINE_ROWS
    BC = min(_pad(DV), cols_per_program or DECODE_COMBINE_COLS)
    _decode_combine_kernel[(triton.cdiv(N * H, BR), triton.cdiv(DV, BC))](
        o_cmp.contiguous(), lse_cmp.contiguous(), o_slc.contiguous(), lse_slc.contiguous(),
        win[0].contiguous(), win[1].contiguous(), o_slc if gates is None else gates.contiguous(),
        out, N * H, *splits, DV=DV, BDV=BC, BS=BS, BR=BR, UNION=union,
        num_warps=DECODE_COMBINE_WARPS,
    )  # fmt: skip
    return out


def merge_splits_torch(o: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The merge of a branch's split partial results in PyTorch, the tests' reference."""
    total = torch.logsumexp(lse, dim=0)
    safe = torch.where(total == float("-inf"), 0.0, total)
    w = torch.exp(lse - safe)[..., None]
    return (w * o.float()).sum(0), total


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """delta = rowsum(a * b) in float32: [N, H, D] x [N, H, D] -> [N, H]."""
    return (a.float() * b.float()).sum(-1)
