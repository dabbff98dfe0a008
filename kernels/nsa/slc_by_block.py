"""The selection branch walked by block, forward and backward: one program reads a selected
block's keys and values once and attends every query that chose it.

Why: with G < 16 a query tile holds a few positions whose blocks barely overlap (random
selections: 27.9 distinct blocks for two positions at G = 6), so the query-major forward
(attention._slc_fwd_loop) gathers a block's K/V again for nearly every position it serves:
~60 GB at 64k for qwen-1.5b, read at L2's speed (kernels/NOTES.md, "The two numbers"). Walked
by block, K/V are read once per work item and the queries are gathered instead (G x Dk per
position, 3.2 GB there), at the price of one partial result per (query, selected block):
o_part [n, N, H, Dv] in the inputs' dtype and its log-sum-exp, written here and merged by
`merge_slots` into the branch's o and lse.

A step packs P = BM // G positions x G heads into BM rows (no head padding: 60 of 64 rows
for G = 6), from a work list of one-position tiles (`position_lists`), so every row of a step
chose the step's block; each list entry names its query row and the slot that holds the
block, so a step loads one int a row before its q.

The backward walks the same lists in one kernel: dK/dV accumulate in registers over an item
(added atomically at its end, as attention's dK/dV kernel does) and each row's dQ from the
block is stored in its slot, dq_part [n, N, H, Dk], which `sum_slots` adds into dQ. The
query-major backward reads every block's K/V twice more (dQ by query tile, dK/dV by block)
and packs rows of two positions, of which only the members of a block do work.

Memory: the partials are n x the branch's output (o_part) or dQ (dq_part), 3.2 GB each for
qwen-1.5b's heads at 64k in bf16, alive only inside one call.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention import (
    _LN2,
    LOG2E,
    Launch,
    Selection,
    _acc_parts,
    _add_cols,
    _add_parts,
    _dims,
    _dot_qk,
    _load_grad_rows,
    _load_keys,
    _load_parts,
    _pad,
    _slc_mask,
    _zeros_parts,
)
from .config import NSAConfig
from .select import slc_work
from .varlen import SeqMeta, device_i32

ROWS_PER_STEP = 64  # BM: positions x G heads gathered per step
# rows (query heads) and warps a program of merge_slots / sum_slots. Each kernel alone on random
# partials, H200, 64k (bench/results/kernels-v13-merge-sweep-h200.txt), ms from 32 rows on 4
# warps: merge qwen-1.5b 1.02 -> 0.86, paper 5.23 -> 4.46 (32 rows, 2 warps); slot sum 1.15 ->
# 0.94, 9.55 -> 7.36 (16 rows, 8 warps). Taken after the session's last module timing.
MERGE_ROWS, MERGE_WARPS = 32, 2
SUM_ROWS, SUM_WARPS = 16, 8
# software pipelining of the step loop: bench/kernels.py --parts slc_walk (H200, 64k, 4 warps,
# 64 rows; bench/results/kernels-slc-walk-sweep-h200.json). Forward: 1 stage, qwen-0.5b
# 3.5 -> 2.6 ms, qwen-1.5b within noise (4.28 vs 4.23). Backward: 1 stage on rows of
# Dk + Dv >= 256 (qwen-1.5b 7.76 -> 6.74 ms), Triton's 3 below (qwen-0.5b 3.88 vs 4.38)
FWD_STAGES = 1
BWD_STAGES_WIDE = 1
BWD_STAGES = 3
# backward rows a step on the paper's 192 + 128 columns (8 warps, 1 stage): 46.9 ms against
# 64.6 at 64 rows and 53.9 at 32 (H200, 64k, kernels-slc-walk-paper-h200.json; at 3 stages
# 128 rows overflowed shared memory); qwen's 128 + 128 keep 64 (6.7-7.0 vs 7.1-7.2 at 128)
BWD_ROWS_WIDE = 128
# each step loads the next step's list entries before its dots (level 1), on the rows where
# that won (H200, 64k, same call, ms with / without; kernels-v13-lists-prefetch-ab-h200.json):
# forward on rows of Dk + Dv >= 256 (qwen-1.5b 3.71-3.87 / 3.92-3.94, paper 30.9-31.2 /
# 32.7; qwen-0.5b's 64 + 64 lost, 2.48 / 2.30), backward on rows of <= 256 (qwen-1.5b 6.2 /
# 6.5-6.6, qwen-0.5b 2.8-2.9 / 3.2; the paper's 192 + 128 lost, 46.7 / 45.4). Rerun at
# session 11 (kernels-v13-slc-prefetch-h200.json, medians of 10, two rounds): the rule won
# or tied on every config and pass. Tried, not kept: also loading the next step's q rows
# (backward qwen-1.5b 8.1-8.3 ms against the rule's 6.0-6.2, paper 46.7 against 43.3; forward
# 0-22% slower). None: the rule
PREFETCH_LEVEL: int | None = None


def _prefetch(d: dict, backward: bool) -> int:
    """The rule above, unless PREFETCH_LEVEL (the tests, A/Bs) sets it."""
    cols = d["DK"] + d["DV"]
    rule = cols <= 256 if backward else cols >= 256
    return int(rule) if PREFETCH_LEVEL is None else PREFETCH_LEVEL


@triton.jit
def _item_block(
    k, v, q_start, q_pos0, k_start, k_len, w_seq, w_blk, w_hkv, w_start, w_len, dv,
    H_KV: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr,
    BDK2: tl.constexpr, BN: tl.constexpr, SLC_BLOCK: tl.constexpr,
):  # fmt: skip
    """This program's work item and its block's keys and values, loaded once: (positions,
    KV head, first list entry, q row, position and key row bases, key ids, valid keys, K
    parts, V). An empty item (past the real ones) loads no key."""
    pid = tl.program_id(0)
    n_pos = tl.load(w_len + pid)
    b = tl.load(w_seq + pid)
    j = tl.load(w_blk + pid)
    hkv = tl.load(w_hkv + pid)
    kbase = tl.load(k_start + b)
    s = j * SLC_BLOCK + tl.arange(0, BN)
    k_end = tl.minimum((j + 1) * SLC_BLOCK, tl.load(k_len + b))
    kvalid = s < tl.where(n_pos > 0, k_end, 0)
    b_k, b_k2 = _load_parts(k, kbase + s, hkv, kvalid, H_KV, DK, BDK, BDK2)
    b_v = _load_keys(v, kbase + s, hkv, dv, kvalid, H_KV, DV)
    first = tl.load(w_start + pid)
    return (n_pos, hkv, first, tl.load(q_start + b), tl.load(q_pos0 + b), kbase, s,
            kvalid, b_k, b_k2, b_v)  # fmt: skip


@triton.jit
def _step_entries(w_entries, first, n_pos, step, r, G: tl.constexpr, P: tl.constexpr):
    """Step `step`'s list entries, one per row (P entries x G heads), and which rows hold one."""
    e = step * P + r // G  # this row's entry of the work item
    valid = (r // G < P) & (e < n_pos)
    return tl.load(w_entries + first + e, mask=valid, other=0), valid


@triton.jit
def _step(
    q, w_entries, first, n_pos, step, entry, valid, r, qbase, pos0, head,
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, P: tl.constexpr, DK: tl.constexpr,
    BDK: tl.constexpr, BDK2: tl.constexpr, NSEL: tl.constexpr, PREFETCH: tl.constexpr,
):  # fmt: skip
    """Step `step` of a work item: its rows (valid, q row, position, q, slot) and the entries
    the next step starts from. An entry is the flat index (row, KV head, slot) of the block in
    idx [N, H_KV, NSEL], as slc_work(slots=True) lists it, so it names its query row and slot
    without a load of idx or of the tile table. PREFETCH (PREFETCH_LEVEL) 0: each step loads
    its own entries (the arguments unused); 1: the next step's entries are loaded here, before
    the caller's dots, so their latency hides."""
    if PREFETCH == 0:
        entry, valid = _step_entries(w_entries, first, n_pos, step, r, G, P)
    row = entry // (H_KV * NSEL)
    b_q, b_q2 = _load_parts(q, row, head, valid, H, DK, BDK, BDK2)
    t, slot = pos0 + row - qbase, entry % NSEL
    next_entry, next_valid = entry, valid
    if PREFETCH == 1:
        next_entry, next_valid = _step_entries(w_entries, first, n_pos, step + 1, r, G, P)
    return valid, row, t, b_q, b_q2, slot, next_entry, next_valid


@triton.jit
def _slc_fwd_by_block_kernel(
    q, k, v, o_part, lse_part,  # o/lse_part [NSEL, N, H, (DV)]
    q_start, q_pos0, k_start, k_len,
    w_seq, w_blk, w_hkv, w_start, w_len, w_entries,  # slc_work(slots=True), one-position tiles
    N, scale_log2, window,
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, P: tl.constexpr, BM: tl.constexpr,
    BN: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDK2: tl.constexpr,
    BDV: tl.constexpr, SLC_BLOCK: tl.constexpr, NSEL: tl.constexpr,
    UNION: tl.constexpr, PREFETCH: tl.constexpr,
):  # fmt: skip
    """Grid (work items): block w_blk of KV head w_hkv for w_len positions of sequence w_seq.
    lse_part is in log2 units; slots no program writes must hold -inf beforehand."""
    dv = tl.arange(0, BDV)
    n_pos, hkv, first, qbase, pos0, _, s, kvalid, b_k, b_k2, b_v = _item_block(
        k, v, q_start, q_pos0, k_start, k_len, w_seq, w_blk, w_hkv, w_start, w_len, dv,
        H_KV, DK, DV, BDK, BDK2, BN, SLC_BLOCK,
    )  # fmt: skip
    r = tl.arange(0, BM)
    head = hkv * G + r % G
    entry, next_valid = _step_entries(w_entries, first, n_pos, 0, r, G, P)
    for step in range(0, tl.cdiv(n_pos, P)):
        valid, row, t, b_q, b_q2, slot, entry, next_valid = _step(
            q, w_entries, first, n_pos, step, entry, next_valid, r, qbase, pos0, head,
            H, H_KV, G, P, DK, BDK, BDK2, NSEL, PREFETCH,
        )  # fmt: skip
        mask = _slc_mask(s, t, valid, valid, kvalid, window, UNION)  # listed: a member
        sc = tl.where(mask, _dot_qk(b_q, b_q2, b_k, b_k2, BDK2) * scale_log2, float("-inf"))
        m = tl.max(sc, 1)
        m_use = tl.where(m == float("-inf"), 0.0, m)
        p = tl.exp2(sc - m_use[:, None])
        l_i = tl.sum(p, 1)
        seen = l_i > 0
        out = tl.dot(p.to(b_v.dtype), b_v) / tl.where(seen, l_i, 1.0)[:, None]
        lse2 = tl.where(seen, m_use + tl.log2(tl.where(seen, l_i, 1.0)), float("-inf"))
        flat = slot.to(tl.int64) * N * H + row.to(tl.int64) * H + head
        o_ptr = o_part + flat[:, None] * DV + dv[None, :]
        tl.store(o_ptr, out.to(o_part.dtype.element_ty), mask=valid[:, None] & (dv[None, :] < DV))
        tl.store(lse_part + flat, lse2, mask=valid)


@triton.jit
def _merge_slots_kernel(
    o_part, lse_part, o, lse, R,  # o_part [NSEL, R, DV], lse_part [NSEL, R] (log2); o [R, DV]
    NSEL: tl.constexpr, DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr,
):  # fmt: skip
    """Rows r of the per-block partial results merged by their log-sum-exp (as flash-decoding
    merges splits); an empty slot (-inf) is never read, so o_part need not be cleared."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    rm = r < R
    c = tl.arange(0, BDV)
    m = tl.full([BR], float("-inf"), tl.float32)
    tot = tl.zeros([BR], dtype=tl.float32)
    acc = tl.zeros([BR, BDV], dtype=tl.float32)
    for sl in tl.static_range(NSEL):
        part = sl * R + r.to(tl.int64)
        b_lse = tl.load(lse_part + part, mask=rm, other=float("-inf"))
        seen = b_lse > float("-inf")
        b_o = tl.load(o_part + part[:, None] * DV + c[None, :],
                      mask=seen[:, None] & (c[None, :] < DV), other=0.0)  # fmt: skip
        m_new = tl.maximum(m, b_lse)
        safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m - safe)
        w = tl.exp2(b_lse - safe)
        tot = tot * alpha + w
        acc = acc * alpha[:, None] + w[:, None] * b_o.to(tl.float32)
        m = m_new
    ok = tot > 0
    out = acc / tl.where(ok, tot, 1.0)[:, None]
    tl.store(o + r.to(tl.int64)[:, None] * DV + c[None, :], out.to(o.dtype.element_ty),
             mask=rm[:, None] & (c[None, :] < DV))  # fmt: skip
    tl.store(lse + r, tl.where(ok, (m + tl.log2(tl.where(ok, tot, 1.0))) * _LN2, float("-inf")),
             mask=rm)  # fmt: skip


@triton.jit
def _store_cols(base, flat, cols, x, valid, D: tl.constexpr):
    ptr = base + flat[:, None] * D + cols[None, :]
    tl.store(ptr, x.to(base.dtype.element_ty), mask=valid[:, None] & (cols[None, :] < D))


@triton.jit
def _slc_bwd_by_block_kernel(
    q, k, v, do, lse, delta, dq_part, dk, dv,  # lse, delta [N, H]; dk/dv fp32, added to
    q_start, q_pos0, k_start, k_len,
    w_seq, w_blk, w_hkv, w_start, w_len, w_entries,
    N, scale_log2, scale, window,
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, P: tl.constexpr, BM: tl.constexpr,
    BN: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDK2: tl.constexpr,
    BDV: tl.constexpr, SLC_BLOCK: tl.constexpr, NSEL: tl.constexpr,
    UNION: tl.constexpr, PREFETCH: tl.constexpr,
):  # fmt: skip
    """Grid (work items), as the forward. dq_part [NSEL, N, H, DK]: each member row's dQ from
    this block, in its slot (the scale applied)."""
    dv_cols = tl.arange(0, BDV)
    n_pos, hkv, first, qbase, pos0, kbase, s, kvalid, b_k, b_k2, b_v = _item_block(
        k, v, q_start, q_pos0, k_start, k_len, w_seq, w_blk, w_hkv, w_start, w_len, dv_cols,
        H_KV, DK, DV, BDK, BDK2, BN, SLC_BLOCK,
    )  # fmt: skip
    acc_k, acc_k2 = _zeros_parts(BN, BDK, BDK2)
    acc_v = tl.zeros([BN, BDV], dtype=tl.float32)
    r = tl.arange(0, BM)
    head = hkv * G + r % G
    entry, next_valid = _step_entries(w_entries, first, n_pos, 0, r, G, P)
    for step in range(0, tl.cdiv(n_pos, P)):
        valid, row, t, b_q, b_q2, slot, entry, next_valid = _step(
            q, w_entries, first, n_pos, step, entry, next_valid, r, qbase, pos0, head,
            H, H_KV, G, P, DK, BDK, BDK2, NSEL, PREFETCH,
        )  # fmt: skip
        b_do, b_lse, b_delta, flat = _load_grad_rows(
            do, lse, delta, row, head, valid, dv_cols, H, DV
        )
        mask = _slc_mask(s, t, valid, valid, kvalid, window, UNION)  # listed: a member
        qk = _dot_qk(b_q, b_q2, b_k, b_k2, BDK2)
        p = tl.where(mask, tl.exp2(qk * scale_log2 - b_lse[:, None]), 0.0)
        acc_v += tl.dot(tl.trans(p).to(b_do.dtype), b_do)
        ds = (p * (tl.dot(b_do, tl.trans(b_v)) - b_delta[:, None])).to(b_q.dtype)
        acc_k, acc_k2 = _acc_parts(acc_k, acc_k2, tl.trans(ds), b_q, b_q2, BDK2)
        part = slot.to(tl.int64) * N * H + flat
        _store_cols(dq_part, part, tl.arange(0, BDK), tl.dot(ds, b_k) * scale, valid, DK)
        if BDK2 > 0:
            _store_cols(dq_part, part, BDK + tl.arange(0, BDK2), tl.dot(ds, b_k2) * scale,
                        valid, DK)  # fmt: skip
    kflat = (kbase + s).to(tl.int64) * H_KV + hkv
    _add_parts(dk, kflat, acc_k * scale, acc_k2 * scale, kvalid, DK, BDK, BDK2, True)
    _add_cols(dv, kflat, dv_cols, acc_v, kvalid, DV, True)


@triton.jit
def _sum_slots_kernel(
    dq_part, idx, dq, R,  # dq_part [NSEL, R, D]; idx [N, H_KV, NSEL]; dq [R, D] fp32, added to
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, NSEL: tl.constexpr,
    D: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr,
):  # fmt: skip
    """dq[r] += the slots of row r that hold a block (idx >= 0; the others are never written)."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    rm = r < R
    c = tl.arange(0, BD)
    sel_row = (r // H).to(tl.int64) * H_KV + (r % H) // G
    cm = c[None, :] < D
    ptr = dq + r.to(tl.int64)[:, None] * D + c[None, :]
    acc = tl.load(ptr, mask=rm[:, None] & cm, other=0.0)
    for sl in tl.static_range(NSEL):
        used = tl.load(idx + sel_row * NSEL + sl, mask=rm, other=-1) >= 0
        part = (sl * R + r.to(tl.int64))[:, None] * D + c[None, :]
        acc += tl.load(dq_part + part, mask=used[:, None] & cm, other=0.0).to(tl.float32)
    tl.store(ptr, acc, mask=rm[:, None] & cm)


def positions_per_step(G: int, rows: int = ROWS_PER_STEP) -> int:
    """P: the positions one step packs (all G heads each) into `rows` rows."""
    return max(1, rows // G)


def _positions(meta: SeqMeta, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-position tiles: tile r is row r, in sequence tile_seq[r] at row tile_i0[r] of it;
    built on the device (make_tiles' host copy of N entries cost ~1 ms)."""
    rows = torch.arange(idx.shape[0], device=idx.device, dtype=torch.int32)
    tile_seq = torch.searchsorted(meta.q_start + meta.q_len, rows, right=True).to(torch.int32)
    return tile_seq, rows - meta.q_start[tile_seq]


def position_lists(
    idx: torch.Tensor, meta: SeqMeta, cfg: NSAConfig, H_kv: int, P: int
) -> tuple[Selection, tuple]:
    """idx as a Selection of one-position tiles (each tile's union is its own blocks, valid
    ones first as top_n leaves them) and its work lists by block (entries with their slots,
    P positions a step), which both by-block kernels walk."""
    tile_seq, tile_i0 = meta.derived(("positions", idx.shape[0]), lambda: _positions(meta, idx))
    pos = Selection(idx, idx, (idx >= 0).sum(-1, dtype=torch.int32), tile_seq, tile_i0, 1)
    return pos, slc_work(pos, meta, cfg, H_kv, P, slots=True)


def slc_fwd_by_block(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sel: Selection, work: tuple,
    meta: SeqMeta, cfg: NSAConfig, scale: float, split_dk: bool = False,
    rows: int = ROWS_PER_STEP, launch: Launch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The selection branch forward: o [N, H, Dv] (q's dtype) and lse [N, H] (fp32, natural
    log, -inf where a row read nothing). sel, work: position_lists(..., P =
    positions_per_step(G, rows)) (another `rows` walks the same lists in other steps).
    launch: Triton's options, for bench/kernels.py's sweep."""
    assert sel.rows_per_tile == 1, "work lists of one-position tiles"
    d = _dims(q, k, v, split_dk)
    N, H, NSEL = q.shape[0], d["H"], cfg.n_selected
    o_part = torch.empty(NSEL, N, H, d["DV"], device=q.device, dtype=q.dtype)
    lse_part = torch.full((NSEL, N, H), float("-inf"), device=q.device, dtype=torch.float32)
    w_seq, w_blk, w_hkv, w_start, w_len, w_entries = work
    k_len = meta.derived(("lens", meta.k_lens), lambda: device_i32(meta.k_lens, q.device))
    wide = d["BDK"] + d["BDK2"] + d["BDV"] > 256
    if w_seq.numel():
        _slc_fwd_by_block_kernel[(w_seq.numel(),)](
            q, k, v, o_part, lse_part, meta.q_start, meta.q_pos0,
            meta.k_start, k_len, w_seq, w_blk, w_hkv, w_start, w_len, w_entries,
            N, scale * LOG2E, cfg.window, P=positions_per_step(d["G"], rows), BM=rows,
            BN=_pad(cfg.slc_block), SLC_BLOCK=cfg.slc_block, NSEL=NSEL,
            UNION=cfg.combine == "union", PREFETCH=_prefetch(d, False),
            **d, **(launch or Launch()).options(8 if wide or rows >= 128 else 4, FWD_STAGES),
        )  # fmt: skip
    return merge_slots(o_part, lse_part)


def merge_slots(o_part: torch.Tensor, lse_part: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """o [N, H, Dv], lse [N, H] (natural log) from the per-slot partials [n, N, H, ...]."""
    NSEL, N, H, DV = o_part.shape
    o = torch.empty(N, H, DV, device=o_part.device, dtype=o_part.dtype)
    lse = torch.empty(N, H, device=o_part.device, dtype=torch.float32)
    R = N * H
    if R:
        _merge_slots_kernel[(triton.cdiv(R, MERGE_ROWS),)](
            o_part, lse_part, o, lse, R, NSEL=NSEL, DV=DV, BDV=_pad(DV), BR=MERGE_ROWS,
            num_warps=MERGE_WARPS,
        )  # fmt: skip
    return o, lse


def slc_bwd_by_block(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, lse: torch.Tensor,
    delta: torch.Tensor, dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor, sel: Selection,
    work: tuple, meta: SeqMeta, cfg: NSAConfig, scale: float, split_dk: bool = False,
    rows: int = 0, launch: Launch | None = None,
) -> None:  # fmt: skip
    """Adds the selection branch's dQ, dK, dV into dq [N, H, Dk], dk, dv (fp32), walking the
    forward's work lists (sel, work as for slc_fwd_by_block). do [N, H, Dv]; lse, delta
    [N, H]: the branch's (union: the merged) log-sum-exp and rowsum(do * o). rows: per step,
    0 for BWD_ROWS_WIDE on rows of Dk + Dv > 256, else ROWS_PER_STEP."""
    d = _dims(q, k, v, split_dk)
    rows = rows or (BWD_ROWS_WIDE if d["DK"] + d["DV"] > 256 else ROWS_PER_STEP)
    N, H, NSEL = q.shape[0], d["H"], cfg.n_selected
    dq_part = torch.empty(NSEL, N, H, d["DK"], device=q.device, dtype=q.dtype)
    stages = BWD_STAGES_WIDE if d["DK"] + d["DV"] >= 256 else BWD_STAGES
    w_seq, w_blk, w_hkv, w_start, w_len, w_entries = work
    k_len = meta.derived(("lens", meta.k_lens), lambda: device_i32(meta.k_lens, q.device))
    if w_seq.numel():
        _slc_bwd_by_block_kernel[(w_seq.numel(),)](
            q, k, v, do, lse, delta, dq_part, dk, dv, meta.q_start,
            meta.q_pos0, meta.k_start, k_len, w_seq, w_blk, w_hkv, w_start, w_len, w_entries,
            N, scale * LOG2E, scale, cfg.window, P=positions_per_step(d["G"], rows), BM=rows,
            BN=_pad(cfg.slc_block), SLC_BLOCK=cfg.slc_block, NSEL=NSEL,
            UNION=cfg.combine == "union", PREFETCH=_prefetch(d, True),
            **d, **(launch or Launch()).options(8 if rows >= 128 else 4, stages),
        )  # fmt: skip
    sum_slots(dq_part, sel.idx, dq)


def sum_slots(dq_part: torch.Tensor, idx: torch.Tensor, dq: torch.Tensor) -> None:
    """dq [N, H, D] (fp32) += the per-slot dQ parts [n, N, H, D] of the slots idx uses."""
    NSEL, N, H, D = dq_part.shape
    R = N * H
    if R:
        _sum_slots_kernel[(triton.cdiv(R, SUM_ROWS),)](
            dq_part, idx, dq, R, H=H, H_KV=idx.shape[1], G=H // idx.shape[1], NSEL=NSEL,
            D=D, BD=_pad(D), BR=SUM_ROWS, num_warps=SUM_WARPS,
        )  # fmt: skip
