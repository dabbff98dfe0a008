"""Top-n blocks of each score row in Triton: one read of the row, then a tournament.

The score table [N, H_kv, N_slc] (select.slc_scores: forced blocks +inf, future blocks -inf)
has R = N * H_kv rows. Each row becomes int64 keys, (order-preserving int32 of the score) in
the high half and (2^31 - 1 - block) in the low half, so a plain integer max yields both the
best score and, among equal scores, the lowest block. The row's blocks fall into NG groups
(NG ~ sqrt(N_slc); a group is KS segments of CS = 8 neighbouring blocks, one 32-byte sector,
NG segments apart, so one sweep step reads NG x 8 contiguous scores); one sweep over the row
keeps each group's best key in registers. Each of the n rounds takes the best of the NG group
maxima, records its block, and refreshes only that group's maximum by re-reading its KS x 8
scores (from L1/L2) and keeping the largest key below the one just taken. A round costs
~NG + KS x 8 key operations, not N_slc, so the kernel is bound by the one read of the table
(1.07 GB for the paper config at 64k) and the latency of n dependent refreshes.

Semantics (equal to select.top_n's former torch.topk version except for ties):
- the output idx [.., n] int32 lists blocks by descending score, so the forced (+inf) blocks
  come first and valid entries precede the empty ones;
- a block whose score is -inf (future, or beyond a shorter sequence's last block) is never
  selected: its slot and every later one hold -1, as do the slots past N_slc when N_slc < n;
- **ties: the lowest block index wins** (equal scores keep block order). torch.topk leaves
  the order of equal values unspecified (on the CPU it is not block order), so where ties
  straddle the n-th place the reference (reference.select_blocks_reference) may pick others;
  `top_n_blocks_torch` is the exact torch twin (a stable descending sort);
- NaN ranks above +inf (as in torch.sort / torch.topk), and -0.0 equals +0.0.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

SEGMENT = 8  # contiguous blocks of a group: 32 bytes of fp32, one DRAM sector
SWEEP_ELEMENTS = 4096  # scores per sweep step of a program (rows x NG x SEGMENT)
MAX_ROWS = 16  # rows per program: more rows, more independent refreshes in flight
NUM_WARPS = 4
_NEG_INF_KEY = tl.constexpr(-2139095041)  # key of -inf: bits 0xFF800000, low 31 flipped


@triton.jit
def _order_keys(x, j):
    """int64 keys, larger = better: (monotone int32 of x) << 32 | (2^31 - 1 - j)."""
    bits = x.to(tl.float32).to(tl.int32, bitcast=True)
    mag = bits & 0x7FFFFFFF
    k32 = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negatives: larger magnitude, smaller key
    k32 = tl.where(mag == 0, 0, k32)  # -0.0 == +0.0
    k32 = tl.where(mag > 0x7F800000, 0x7FFFFFFF, k32)  # any NaN above +inf
    return (k32.to(tl.int64) << 32) + (0x7FFFFFFF - j).to(tl.int64)


@triton.jit
def _top_n_kernel(
    scores, idx,  # scores [R, NS] float; idx [R, NSEL] int32
    R, NS,
    NSEL: tl.constexpr, BSEL: tl.constexpr, ROWS: tl.constexpr,
    NG: tl.constexpr, KS: tl.constexpr, CS: tl.constexpr,
):  # fmt: skip
    """Group g holds the CS-block segments g, g + NG, .., g + (KS - 1) NG of a row: a sweep step
    reads NG x CS contiguous scores, a refresh KS whole sectors."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # [ROWS]
    m_row = rows < R
    p_row = scores + rows.to(tl.int64) * NS  # [ROWS]
    # below every real key (-inf's included): marks empty groups and padding
    none = tl.full([ROWS], -2147483647, tl.int32).to(tl.int64) << 32
    g = tl.arange(0, NG)
    c = tl.arange(0, CS)
    # sweep: b_gmax [ROWS, NG], the best key of each group
    b_gmax = tl.broadcast_to(none[:, None], (ROWS, NG))
    for k in range(KS):
        j = (k * NG + g[:, None]) * CS + c[None, :]  # [NG, CS]
        m = m_row[:, None, None] & (j < NS)[None, :, :]
        b_x = tl.load(p_row[:, None, None] + j[None, :, :], mask=m, other=0.0)
        b_key = tl.where(m, _order_keys(b_x, j[None, :, :]), none[:, None, None])
        b_gmax = tl.maximum(b_gmax, tl.max(b_key, 2))
    o = tl.arange(0, BSEL)
    ks = tl.arange(0, KS)
    b_out = tl.full([ROWS, BSEL], -1, tl.int32)
    for r in range(NSEL):
        best = tl.max(b_gmax, 1)  # [ROWS]
        blk = 0x7FFFFFFF - (best - ((best >> 32) << 32)).to(tl.int32)
        found = (best >> 32) > _NEG_INF_KEY  # a finite or +inf score is left
        b_out = tl.where(o[None, :] == r, tl.where(found, blk, -1)[:, None], b_out)
        # refresh the winning group: its best key below the one just taken
        grp = (blk // CS) % NG
        live = m_row & (best > none)
        j = (ks[None, :, None] * NG + grp[:, None, None]) * CS + c[None, None, :]  # [ROWS, KS, CS]
        m = live[:, None, None] & (j < NS)
        b_x = tl.load(p_row[:, None, None] + j, mask=m, other=0.0)
        b_key = _order_keys(b_x, j)
        b_key = tl.where(m & (b_key < best[:, None, None]), b_key, none[:, None, None])
        nxt = tl.max(tl.max(b_key, 2), 1)  # [ROWS]
        b_gmax = tl.where((g[None, :] == grp[:, None]) & live[:, None], nxt[:, None], b_gmax)
    p_out = idx + rows.to(tl.int64)[:, None] * NSEL + o[None, :]
    tl.store(p_out, b_out, mask=m_row[:, None] & (o[None, :] < NSEL))


@triton.jit
def _top_n_in_registers_kernel(
    scores, idx, NS,  # as _top_n_kernel: scores [R, NS] float; idx [R, NSEL] int32; R programs
    counts,  # COUNT: [R] int32, the valid entries of each row of idx
    NSEL: tl.constexpr, BSEL: tl.constexpr, BNS: tl.constexpr, COUNT: tl.constexpr,
    SORT: tl.constexpr,
):  # fmt: skip
    """One row per program, held in registers. For few rows (decode: batch x H_kv), where the
    tournament's dependent refreshes, each an L2 round trip, set the time. SORT: Triton's
    bitonic top-k over the keys (keys are unique, so it is exact); else n dependent rounds of
    (max, drop it), each a register and shuffle reduction."""
    row = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, BNS)
    m = j < NS
    none = tl.full([1], -2147483647, tl.int32).to(tl.int64) << 32
    keys = tl.where(m, _order_keys(tl.load(scores + row * NS + j, mask=m, other=0.0), j), none)
    o = tl.arange(0, BSEL)
    if SORT:
        best = tl.topk(keys, BSEL)  # [BSEL], descending
        blk = 0x7FFFFFFF - (best - ((best >> 32) << 32)).to(tl.int32)
        b_out = tl.where((best >> 32) > _NEG_INF_KEY, blk, -1)
    else:
        b_out = tl.full([BSEL], -1, tl.int32)
        for r in range(NSEL):
            best = tl.max(keys, 0)
            blk = 0x7FFFFFFF - (best - ((best >> 32) << 32)).to(tl.int32)
            found = (best >> 32) > _NEG_INF_KEY
            b_out = tl.where(o == r, tl.where(found, blk, -1), b_out)
            keys = tl.where(keys == best, none, keys)
    tl.store(idx + row * NSEL + o, b_out, mask=o < NSEL)
    if COUNT:
        tl.store(counts + row, tl.sum(((o < NSEL) & (b_out >= 0)).to(tl.int32), 0))


REGISTER_ROWS = 4096  # at most this many rows (and 4096 blocks a row): one row per program
REGISTER_BLOCKS_PER_WARP = 1024  # 32 int64 keys per thread
# the register kernel's top-n: Triton's bitonic tl.topk (log^2 compare-exchange stages, all
# independent across the row) where this Triton has it, else n dependent max rounds. H200,
# 64k, decode (bench/kernels.py --parts decode_topn): 4.3-4.7 us against 7.4-7.9 for the
# rounds. Not under the interpreter (CPU), which runs the sort ~50x slower than the rounds
# (2-3 s a row of 1024 blocks); the tests run it there on a few rows.
REGISTER_SORT = hasattr(tl, "topk") and os.environ.get("TRITON_INTERPRET") != "1"
REGISTER_SORT_WARPS = 8  # the sweep's best at batch 1 and 32 (4: up to 12% slower)


def _tiles(NS: int, max_rows: int = MAX_ROWS) -> tuple[int, int, int, int]:
    """ROWS, NG, KS, CS for rows of NS scores: NG groups of KS segments of CS blocks."""
    nsp = triton.next_power_of_2(max(NS, 1))
    CS = min(SEGMENT, nsp)
    NG = min(triton.next_power_of_2(math.isqrt(nsp)), nsp // CS)
    KS = nsp // (NG * CS)
    ROWS = max(1, min(max_rows, SWEEP_ELEMENTS // (NG * CS)))
    return ROWS, NG, KS, CS


def top_n_blocks(
    scores: torch.Tensor, n: int, max_rows: int = MAX_ROWS, num_warps: int = NUM_WARPS,
    in_registers: bool | None = None, counts: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """idx [.., n] int32: the n best blocks of each row of scores [.., N_slc], best first.

    Ties go to the lower block; -inf scores and slots past N_slc give -1 (module docstring).
    max_rows / num_warps: rows per program (a power of two) and warps, for tile sweeps.
    in_registers: one row per program in registers (_top_n_in_registers_kernel) instead of
    the tournament; None picks it for up to REGISTER_ROWS rows of up to 4096 blocks (decode).
    counts: an int32 tensor of the rows' shape that receives each row's valid entries (the
    register kernel writes them; decode needs them and would spend two more kernels).
    """
    *lead, NS = scores.shape
    out = torch.empty(*lead, n, device=scores.device, dtype=torch.int32)
    R = out.numel() // n
    if R == 0:
        return out
    if NS == 0:
        if counts is not None:
            counts.zero_()
        return out.fill_(-1)
    BNS = triton.next_power_of_2(NS)
    if in_registers is None:
        in_registers = R <= REGISTER_ROWS and BNS <= 4 * REGISTER_BLOCKS_PER_WARP
    if in_registers:
        BSEL = triton.next_power_of_2(n)
        warps = max(1, BNS // REGISTER_BLOCKS_PER_WARP)
        if REGISTER_SORT:  # the sort wants at least n keys, and spreads over more warps
            BNS, warps = max(BNS, BSEL), max(warps, REGISTER_SORT_WARPS)
        _top_n_in_registers_kernel[(R,)](
            scores.contiguous(), out, NS, out if counts is None else counts, NSEL=n,
            BSEL=BSEL, BNS=BNS, COUNT=counts is not None, SORT=REGISTER_SORT, num_warps=warps,
        )  # fmt: skip
        return out
    ROWS, NG, KS, CS = _tiles(NS, max_rows)
    _top_n_kernel[(triton.cdiv(R, ROWS),)](
        scores.contiguous(), out, R, NS,
        NSEL=n, BSEL=triton.next_power_of_2(n), ROWS=ROWS, NG=NG, KS=KS, CS=CS,
        num_warps=num_warps,
    )  # fmt: skip
    if counts is not None:
        torch.sum(out >= 0, dim=-1, dtype=torch.int32, out=counts)
    return out


def top_n_blocks_torch(scores: torch.Tensor, n: int) -> torch.Tensor:
    """The same as top_n_blocks in torch (a stable descending sort): the twin the tests use."""
    k = min(n, scores.shape[-1])
    top, idx = scores.sort(dim=-1, descending=True, stable=True)
    top, idx = top[..., :k], idx[..., :k]
    idx = idx.masked_fill(top == float("-inf"), -1).to(torch.int32)
    return torch.nn.functional.pad(idx, (0, n - k), value=-1)
