"""Block selection: importance scores (Eq. 8-10) in Triton, top-n, and the per-tile block lists.

The scores kernel recomputes the compressed attention probabilities from its log-sum-exp,
maps them onto selection blocks (Eq. 9, the overlap weights of reference.overlap_matrix, as a
tensor-core dot per step plus the spill carried into the next step) and sums the G heads of a
group (Eq. 10) in registers, so it writes one [N, H_kv, N_slc] fp32 score table per group
instead of a [T x T_cmp] matrix per head. Forced blocks (first, local two)
are written as +inf and blocks that start after t as -inf, so top-n is a plain top-k
(topn.py: one Triton pass per score row, ties to the lower block).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..errors import KernelsUserError
from .attention import (
    _LOG2E,
    LOG2E,
    Launch,
    Selection,
    _dot_qk,
    _load_parts,
    _whole_cmp_chunks,
    head_parts,
    tile_rows,
)
from .config import NSAConfig
from .topn import top_n_blocks, top_n_blocks_torch
from .varlen import SeqMeta, query_tiles

SCORE_TILE_ROWS = 64  # rows (positions x padded heads) per scores tile; 128 on wide heads
SCORE_BLOCKS = 16  # selection blocks per inner step (BJ)
SLC_WORK_TILES = 32  # dK/dV steps per work item of the selection branch (before atomics)


@triton.jit
def _cmp_probs(b_q, b_q2, kc, c, hkv, t, valid, cl, cbase, b_lse, scale_log2,
               H_KV: tl.constexpr, DK: tl.constexpr, BDK: tl.constexpr, BDK2: tl.constexpr,
               CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr,
               MASKED: tl.constexpr):  # fmt: skip
    """Compressed attention probabilities [rows, c], q.k recomputed. MASKED = False: every
    row sees every token of c (rows that are not valid have b_lse = +inf, so p = 0)."""
    cvalid = (c >= 0) & (c < cl)
    b_k, b_k2 = _load_parts(kc, cbase + c, hkv, cvalid, H_KV, DK, BDK, BDK2)
    s = _dot_qk(b_q, b_q2, b_k, b_k2, BDK2) * scale_log2
    if not MASKED:
        return tl.exp2(s - b_lse[:, None])
    vis = (
        valid[:, None] & cvalid[None, :] & ((c * CMP_STRIDE + CMP_BLOCK - 1)[None, :] <= t[:, None])
    )
    return tl.where(vis, tl.exp2(s - b_lse[:, None]), 0.0)


@triton.jit
def _onto_blocks(p, overlap, EXACT: tl.constexpr):
    """p [rows, BC] @ overlap [BC, BJ] (Eq. 9 inside one step), fp32. EXACT (fp32 inputs): one
    full-precision dot; else p is split in two of overlap's 16-bit type (hi + lo, ~2^-16
    relative), two tensor-core dots that keep the scores close enough to fp32 that top-n
    picks the same blocks (one bf16 dot flipped 3.3% of them; kernels/NOTES.md v12)."""
    if EXACT:
        return tl.dot(p, overlap, input_precision="ieee")
    p_hi = p.to(overlap.dtype)
    acc = tl.dot(p_hi, overlap)
    return tl.dot((p - p_hi.to(tl.float32)).to(overlap.dtype), overlap, acc)


@triton.jit
def _slc_scores_kernel(
    q, kc, lse, scores,  # q [N, H, DK]; kc [*, H_KV, DK]; lse [N, H]; scores [N, H_KV, NS]
    tile_seq, tile_i0, q_start, q_len, q_pos0, c_start, c_len,
    NS, scale_log2,
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, GP: tl.constexpr, BT: tl.constexpr,
    BM: tl.constexpr, DK: tl.constexpr, BDK: tl.constexpr, BDK2: tl.constexpr,
    BJ: tl.constexpr, BC: tl.constexpr,
    CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr, SLC_BLOCK: tl.constexpr,
    L_UNITS: tl.constexpr, R_UNITS: tl.constexpr, EXACT: tl.constexpr,
):  # fmt: skip
    tile = tl.program_id(0)
    hkv = tl.program_id(1)
    b = tl.load(tile_seq + tile)
    i0 = tl.load(tile_i0 + tile)
    ql = tl.load(q_len + b)
    pos0 = tl.load(q_pos0 + b)
    cbase = tl.load(c_start + b)
    cl = tl.load(c_len + b)
    r = tl.arange(0, BM)
    i = r // GP
    valid = (r % GP < G) & (i0 + i < ql)
    row = tl.load(q_start + b) + i0 + i
    head = hkv * G + r % GP
    t = pos0 + i0 + i
    b_q, b_q2 = _load_parts(q, row, head, valid, H, DK, BDK, BDK2)
    b_lse = tl.load(lse + row.to(tl.int64) * H + head, mask=valid, other=0.0)
    b_lse = tl.where(b_lse == float("-inf"), 0.0, b_lse * _LOG2E)
    b_lse = tl.where(valid, b_lse, float("inf"))  # p = 0 on padding rows, masked or not
    # per position (not per row) for the output
    ti = tl.arange(0, BT)
    t_pos = pos0 + i0 + ti
    pos_ok = i0 + ti < ql
    cur = t_pos // SLC_BLOCK
    t_hi = pos0 + i0 + tl.minimum(BT, ql - i0) - 1
    out_row = (tl.load(q_start + b) + i0 + ti).to(tl.int64) * H_KV + hkv
    n_jc = tl.cdiv(t_hi // SLC_BLOCK + 1, BJ)
    # steps whose compressed tokens all ended by the tile's first position need no mask
    whole = tl.minimum(_whole_cmp_chunks(pos0 + i0, BC, CMP_BLOCK, CMP_STRIDE), n_jc)
    # Eq. 9 with l <= l': compressed token cc of a step lies in block cc // R; w_in[u] of its
    # units (u = cc % R) fall inside that block and w_out[u] spill into the next block
    cc = tl.arange(0, BC)
    u = cc % R_UNITS
    w_in = tl.minimum(L_UNITS, R_UNITS - u).to(tl.float32)
    w_out = L_UNITS - w_in
    jj = tl.arange(0, BJ)
    home = (cc // R_UNITS)[:, None]
    overlap = tl.where(jj[None, :] == home, w_in[:, None], 0.0)
    overlap += tl.where(jj[None, :] == home + 1, w_out[:, None], 0.0)  # [BC, BJ]
    overlap = overlap.to(kc.dtype.element_ty)  # small integers: exact in 16 bits
    w_last = tl.where(cc // R_UNITS == BJ - 1, w_out, 0.0)  # spills past the step
    carry = tl.zeros([BM], dtype=tl.float32)  # what the previous step spills into this one
    for part in tl.static_range(2):  # the unmasked steps, then the masked ones
        if part == 0:
            first, last = 0, whole
        else:
            first, last = whole, n_jc
        for jc in range(first, last):
            j = jc * BJ + jj
            c = jc * BC + cc
            p = _cmp_probs(b_q, b_q2, kc, c, hkv, t, valid, cl, cbase, b_lse, scale_log2,
                           H_KV, DK, BDK, BDK2, CMP_BLOCK, CMP_STRIDE, part == 1)  # fmt: skip
            acc = _onto_blocks(p, overlap, EXACT)
            acc += tl.where(jj[None, :] == 0, carry[:, None], 0.0)
            carry = tl.sum(p * w_last[None, :], 1)
            group = tl.sum(tl.reshape(acc, (BT, GP, BJ)), 1)  # [BT, BJ], Eq. 10
            forced = (
                (j[None, :] == 0) | (j[None, :] == cur[:, None]) | (j[None, :] == cur[:, None] - 1)
            )
            group = tl.where(forced, float("inf"), group)
            group = tl.where(j[None, :] > cur[:, None], float("-inf"), group)
            ptr = scores + out_row[:, None] * NS + j[None, :]
            tl.store(ptr, group, mask=pos_ok[:, None] & (j[None, :] < NS))


def _check_units(cfg: NSAConfig) -> tuple[int, int]:
    L, R = cfg.cmp_block // cfg.cmp_stride, cfg.slc_block // cfg.cmp_stride
    if R & (R - 1):
        raise KernelsUserError(
            f"the Triton kernels need slc_block / cmp_stride to be a power of two, got {R}"
        )
    if L > R:
        raise KernelsUserError("the Triton kernels need cmp_block <= slc_block")
    return L, R


def slc_scores(
    q: torch.Tensor, kc: torch.Tensor, lse_cmp: torch.Tensor, meta: SeqMeta, cfg: NSAConfig,
    scale: float, split_dk: bool = False, score_rows: int = 0, block_j: int = SCORE_BLOCKS,
    launch: Launch | None = None,
) -> torch.Tensor:  # fmt: skip
    """Block scores [N, H_kv, N_slc] fp32 (forced +inf, future -inf) from the compressed lse.

    split_dk tiles Dk in two power-of-two parts (attention.head_parts). score_rows
    (positions x padded heads), block_j (selection blocks per step) and launch are for
    bench/kernels.py's sweep; by default a Dk tiled wider than 128 (the paper's 192) takes
    128-row tiles and no pipelining (H200, 64k: 16.8 -> 13.9 ms;
    bench/results/kernels-scores-h200.json), narrower ones 2 stages (v13: qwen-1.5b 2.47 ->
    2.32 ms, qwen-0.5b 2.19 -> 2.04; kernels-v13-launch-ab-h200.json). Decode reads the
    compressed pass's logits instead (decode_scores.py).
    """
    L, R = _check_units(cfg)
    N, H, DK = q.shape
    H_KV = kc.shape[1]
    G = H // H_KV
    GP = triton.next_power_of_2(G)
    BDK, BDK2 = head_parts(DK, split_dk)
    wide = BDK + BDK2 > 128
    score_rows = score_rows or (2 * SCORE_TILE_ROWS if wide else SCORE_TILE_ROWS)
    opts = (launch or Launch()).options(stages=1 if wide else 2)
    BT = max(1, score_rows // GP, 16 // GP)
    NS = max(cfg.num_slc_blocks(n) for n in meta.k_lens)
    scores = torch.full((N, H_KV, NS), float("-inf"), device=q.device, dtype=torch.float32)
    tile_seq, tile_i0 = query_tiles(meta, BT, q.device)
    _slc_scores_kernel[(tile_seq.numel(), H_KV)](
        q, kc, lse_cmp, scores, tile_seq, tile_i0,
        meta.q_start, meta.q_len, meta.q_pos0, meta.c_start, meta.c_len, NS, scale * LOG2E,
        H=H, H_KV=H_KV, G=G, GP=GP, BT=BT, BM=BT * GP, DK=DK, BDK=BDK, BDK2=BDK2, BJ=block_j,
        BC=block_j * R, CMP_BLOCK=cfg.cmp_block, CMP_STRIDE=cfg.cmp_stride,
        SLC_BLOCK=cfg.slc_block, L_UNITS=L, R_UNITS=R, EXACT=q.dtype == torch.float32, **opts,
    )  # fmt: skip
    return scores


def top_n(scores: torch.Tensor, cfg: NSAConfig) -> torch.Tensor:
    """idx [N, H_kv, n] int32 from scores [N, H_kv, N_slc]: the n best blocks by descending
    score (forced ones first), ties to the lower block, -1 for empty slots (Triton, topn.py)."""
    return top_n_blocks(scores, cfg.n_selected)


def top_n_torch(scores: torch.Tensor, cfg: NSAConfig) -> torch.Tensor:
    """top_n in plain torch, equal to it element for element (the tests' twin)."""
    return top_n_blocks_torch(scores, cfg.n_selected)


@triton.jit
def _tile_union_kernel(
    idx, ulist, ucount,  # idx [N, H_KV, NSEL]; ulist [n_tiles, H_KV, U]; ucount [n_tiles, H_KV]
    tile_seq, tile_i0, q_start, q_len, q_pos0, U,
    H_KV: tl.constexpr, NSEL: tl.constexpr, BT: tl.constexpr, BE: tl.constexpr,
    BJ: tl.constexpr, SLC_BLOCK: tl.constexpr,
):  # fmt: skip
    """Sorted union of the blocks a tile's positions selected, by a membership sweep."""
    tile = tl.program_id(0)
    hkv = tl.program_id(1)
    b = tl.load(tile_seq + tile)
    i0 = tl.load(tile_i0 + tile)
    ql = tl.load(q_len + b)
    e = tl.arange(0, BE)
    i = e // NSEL
    valid = (i < BT) & (i0 + i < ql)
    row = (tl.load(q_start + b) + i0 + i).to(tl.int64)
    blocks = tl.load(idx + (row * H_KV + hkv) * NSEL + e % NSEL, mask=valid, other=-1)  # [BE]
    last = (tl.load(q_pos0 + b) + i0 + tl.minimum(BT, ql - i0) - 1) // SLC_BLOCK
    out = ulist + (tile * H_KV + hkv).to(tl.int64) * U
    count = 0
    for j0 in range(0, last + 1, BJ):
        j = j0 + tl.arange(0, BJ)
        member = tl.max((blocks[:, None] == j[None, :]).to(tl.int32), 0)  # [BJ]
        pos = count + tl.cumsum(member, 0) - member
        tl.store(out + pos, j, mask=member > 0)
        count += tl.sum(member, 0)
    tl.store(ucount + tile * H_KV + hkv, count)


UNION_SWEEP = 128  # blocks per membership step


def build_selection(
    idx: torch.Tensor, meta: SeqMeta, cfg: NSAConfig, G: int, block_m: int
) -> Selection:
    """Union of the selected blocks of each tile's positions: ulist [n_tiles, H_kv, U], sorted,
    its first ucount entries valid."""
    _, BT = tile_rows(G, block_m)
    tile_seq, tile_i0 = query_tiles(meta, BT, idx.device)
    H_KV, n = idx.shape[1], idx.shape[2]
    U = min(BT * n, max(cfg.num_slc_blocks(k) for k in meta.k_lens))
    if BT == 1 and not meta.single_query:
        # one position per tile: its union is its own top-n, valid entries first (top_n order)
        return Selection(idx, idx, (idx >= 0).sum(-1).to(torch.int32), tile_seq, tile_i0, 1)
    ulist = torch.empty(tile_seq.numel(), H_KV, U, device=idx.device, dtype=torch.int32)
    ucount = torch.empty(tile_seq.numel(), H_KV, device=idx.device, dtype=torch.int32)
    _tile_union_kernel[(tile_seq.numel(), H_KV)](
        idx, ulist, ucount, tile_seq, tile_i0, meta.q_start, meta.q_len, meta.q_pos0, U,
        H_KV=H_KV, NSEL=n, BT=BT, BE=triton.next_power_of_2(BT * n), BJ=UNION_SWEEP,
        SLC_BLOCK=cfg.slc_block,
    )  # fmt: skip
    return Selection(idx, ulist, ucount, tile_seq, tile_i0, BT)


def selection_per_query(
    idx: torch.Tensor, counts: torch.Tensor, meta: SeqMeta, G: int, block_m: int
) -> Selection:
    """Tiles of one position (decode): each tile's union is its own blocks, in top_n's order
    (valid ones first, `counts` of them: top_n_blocks(counts=); the kernels visit a union in
    any order); no host sync."""
    _, BT = tile_rows(G, block_m)
    assert meta.single_query, "one query per sequence"
    return Selection(idx, idx, counts, meta.tile_seq, meta.tile_i0, BT)


WORK_ITEMS_PER_PROGRAM = 1024


@triton.jit
def _work_items_kernel(
    counts, seg_end, piece_end, items,  # [n_keys] each; items [5, n_items] int32
    n_keys, n_items, per_item, H_KV, n_blk,
    SEARCH_STEPS: tl.constexpr, BI: tl.constexpr,
):  # fmt: skip
    """Item i's (sequence, block, KV head, first entry, entries): its key is the first whose
    piece_end (inclusive prefix sum of the pieces) exceeds i, found by binary search, and its
    key's entries end at seg_end (inclusive prefix sum of the counts); items past the last
    piece get 0 entries. One launch where ~20 torch ops were: the host's enqueue of a
    qwen-1.5b forward at 8k went 2.78 -> 2.05 ms (H200, kernels/NOTES.md v11)."""
    i = tl.program_id(0) * BI + tl.arange(0, BI)
    im = i < n_items
    lo = tl.zeros([BI], dtype=tl.int32)
    hi = tl.zeros([BI], dtype=tl.int32) + n_keys
    for _ in tl.static_range(SEARCH_STEPS):  # first key with piece_end > i, in [lo, hi]
        open_ = lo < hi
        mid = (lo + hi) // 2
        right = tl.load(piece_end + mid, mask=open_, other=0) <= i
        lo = tl.where(open_ & right, mid + 1, lo)
        hi = tl.where(open_ & ~right, mid, hi)
    owner = tl.minimum(lo, n_keys - 1)
    count = tl.load(counts + owner, mask=im, other=0)
    end = tl.load(piece_end + owner, mask=im, other=0)
    piece = i - (end - (count + per_item - 1) // per_item)
    seg_start = tl.load(seg_end + owner, mask=im, other=0) - count
    n = tl.minimum(tl.maximum(count - piece * per_item, 0), per_item)
    n = tl.where(i < tl.load(piece_end + n_keys - 1), n, 0)
    tl.store(items + i, owner // (H_KV * n_blk), mask=im)
    tl.store(items + n_items + i, owner % n_blk, mask=im)
    tl.store(items + 2 * n_items + i, owner // n_blk % H_KV, mask=im)
    tl.store(items + 3 * n_items + i, seg_start + piece * per_item, mask=im)
    tl.store(items + 4 * n_items + i, n, mask=im)


def slc_work(
    sel: Selection, meta: SeqMeta, cfg: NSAConfig, H_KV: int, tiles_per_step: int = 1,
    slots: bool = False,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """dK/dV work items of the selection branch: for each (block, KV head), its query tiles.

    Returns w_seq, w_blk, w_hkv, w_start, w_len [W] and w_tiles (tile ids grouped by block),
    int32; with slots, the entries grouped by block instead: each one's flat index (tile, KV
    head, position in the tile's union) into sel.ulist [n_tiles, H_KV, U]. A block read by
    more than SLC_WORK_TILES x tiles_per_step tiles (the dK/dV kernel's steps gather
    tiles_per_step tiles, attention.slc_step_tiles) is split over several items.

    Built with device ops of fixed sizes and no host sync (one sort, a binary search, prefix sums,
    then one kernel that decodes every item): W is an upper bound known on the host (one item
    per (sequence, head, block) plus one per full piece of the most entries the unions can
    hold), and the items past the real ones have w_len = 0. The v6 version (mask, argsort,
    unique, repeat_interleave) synced three times; timed alone at 64k on the H200 the v7 one
    took 1.16 ms for the paper config (v6 1.78) and 0.94 for qwen-1.5b (v6 1.28).
    """
    per_item = SLC_WORK_TILES * tiles_per_step
    U = sel.ulist.shape[-1]
    dev = sel.ulist.device
    n_blk = max(cfg.num_slc_blocks(n) for n in meta.k_lens)
    n_keys = meta.batch * H_KV * n_blk  # one key per (sequence, KV head, block)
    # index vectors that depend on the shapes only, made once per meta (a model's layers and
    # the backward reuse them: a few host-bound ops fewer a call at short lengths)
    hkv, union_slots, bounds = meta.derived(
        ("slc_work", H_KV, U, n_keys),
        lambda: tuple(
            torch.arange(a, b, device=dev, dtype=torch.int32)
            for a, b in ((0, H_KV), (0, U), (1, n_keys + 1))
        ),
    )
    hkv = hkv[None, :, None]
    seq = sel.tile_seq[:, None, None]
    used = union_slots[None, None, :] < sel.ucount[..., None]
    key = torch.where(used, (seq * H_KV + hkv) * n_blk + sel.ulist, n_keys).flatten()
    if n_keys == 0 or key.numel() == 0:
        return tuple(torch.zeros(0, device=dev, dtype=torch.int32) for _ in range(6))
    key, order = torch.sort(key)  # unused entries (key n_keys) sort last
    # each key's entries end where the sorted keys pass it: a binary search a key, where a
    # scatter_add histogram of the 2M entries took 0.28-0.39 ms of contended atomics (64k)
    seg_end = torch.searchsorted(key, bounds, out_int32=True)
    counts = torch.diff(seg_end, prepend=seg_end.new_zeros(1))
    piece_end = torch.cumsum((counts + per_item - 1) // per_item, 0, dtype=torch.int32)
    n_items = n_keys + triton.cdiv(key.numel(), per_item)  # >= piece_end[-1]
    items = torch.empty(5, n_items, device=dev, dtype=torch.int32)
    _work_items_kernel[(triton.cdiv(n_items, WORK_ITEMS_PER_PROGRAM),)](
        counts, seg_end, piece_end, items, n_keys, n_items, per_item, H_KV, n_blk,
        SEARCH_STEPS=max(1, n_keys.bit_length()), BI=WORK_ITEMS_PER_PROGRAM,
    )  # fmt: skip
    entries = order if slots else order // (H_KV * U)
    return (*items.unbind(0), entries.to(torch.int32))
