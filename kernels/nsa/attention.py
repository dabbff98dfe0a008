"""Block-sparse flash attention shared by the three NSA branches: forward, dQ and dK/dV.

One tile holds BT consecutive query positions x all G heads of one KV group (row r is position
r // G, head r % G), so the heads of a group share every key load and a tile has >= 16 rows
even for G = 1 or 2. What a tile reads depends on MODE:

- CMP: compressed tokens c with c*d + l - 1 <= t (the block has ended);
- SLC: the union of the blocks its positions selected, each row masked to its own blocks,
  causal inside the block, and (union combine) to keys outside the window;
- WIN: keys t - w < s <= t.

Kernels take q [N, H, Dk], k [*, H_kv, Dk], v [*, H_kv, Dv] (contiguous) and per-sequence
offsets (see varlen.py); outputs o [S, N, H, Dv] and lse [S, N, H] (natural log, -inf where a
row reads nothing) with S key splits for flash-decoding.

Tiles are powers of two wide, so a head dim Dk that is not one is either padded (192 -> 256:
a third more MMA work, registers and shared memory in every q.k, dQ and dK dot; the masked
columns are not read from memory) or, with split_dk, covered by two power-of-two parts
(192 = 128 + 64, head_parts): q and k load as two tiles, q.k is the sum of two dots and dQ / dK
are accumulated and stored per part. BDK2 = 0 (the default, and any power-of-two Dk) compiles
the one-tile path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .config import NSAConfig
from .varlen import SeqMeta, device_i32, make_tiles, query_tiles

MODE_CMP, MODE_SLC, MODE_WIN = 0, 1, 2
# dK/dV of the compressed branch: early key tiles are read by every later query, so one
# program per key tile would serialise ~T / BT query steps; cap the steps per program
DKDV_QUERY_STEPS = 128
# dK/dV of the selection branch gathers this many query rows per step (several of the forward's
# tiles when those are short: 1 position x 16 heads for G = 16), so each step's dots have
# K = 64 instead of 16
SLC_STEP_ROWS = 64
# the compressed branch (forward; dQ and dK/dV on rows of up to 256 columns, see _parts): chunks
# of compressed tokens every row of a tile sees whole skip the causal mask (read at each call,
# so bench/kernels.py can time both)
UNMASKED_FULL_CHUNKS = True
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
_LOG2E = tl.constexpr(LOG2E)  # the kernels may only read constexpr globals
_LN2 = tl.constexpr(LN2)


@dataclass(frozen=True)
class Selection:
    """Blocks chosen per query and their union per tile (built by select.py).

    idx [N, H_kv, n] (-1 = empty), ulist [n_tiles, H_kv, U] sorted unique blocks of each tile,
    ucount [n_tiles, H_kv], and the tiles (rows_per_tile positions each) they were built for.
    """

    idx: torch.Tensor
    ulist: torch.Tensor
    ucount: torch.Tensor
    tile_seq: torch.Tensor
    tile_i0: torch.Tensor
    rows_per_tile: int


@triton.jit
def _load_rows(base, rows, heads, cols, valid, NH: tl.constexpr, D: tl.constexpr):
    """[BM, BD] tile of a [N, NH, D] tensor at (rows, heads)."""
    ptr = base + (rows.to(tl.int64) * NH + heads)[:, None] * D + cols[None, :]
    return tl.load(ptr, mask=valid[:, None] & (cols[None, :] < D), other=0.0)


@triton.jit
def _load_grad_rows(do, lse, delta, row, head, valid, dv, H: tl.constexpr, DV: tl.constexpr):
    """A backward step's per-row inputs: dO [rows, BDV], the log-sum-exp in log2 units (0
    where the row read nothing) and delta, plus the rows' flat (row, head) offsets."""
    b_do = _load_rows(do, row, head, dv, valid, H, DV)
    flat = row.to(tl.int64) * H + head
    b_lse = tl.load(lse + flat, mask=valid, other=0.0)
    b_lse = tl.where(b_lse == float("-inf"), 0.0, b_lse * _LOG2E)
    b_delta = tl.load(delta + flat, mask=valid, other=0.0)
    return b_do, b_lse, b_delta, flat


@triton.jit
def _load_keys(base, rows, hkv, cols, valid, H_KV: tl.constexpr, D: tl.constexpr):
    """[BN, BD] tile of a [*, H_kv, D] tensor for one KV head."""
    ptr = base + (rows.to(tl.int64) * H_KV + hkv)[:, None] * D + cols[None, :]
    return tl.load(ptr, mask=valid[:, None] & (cols[None, :] < D), other=0.0)


@triton.jit
def _load_parts(base, rows, heads, valid, NH: tl.constexpr, D: tl.constexpr, BD: tl.constexpr,
                BD2: tl.constexpr):  # fmt: skip
    """Rows of a [*, NH, D] tensor as two column parts, [BM, BD] and [BM, BD2] (a head dim
    split into powers of two, head_parts). BD2 = 0: one part padded to BD, returned twice."""
    b_x = _load_rows(base, rows, heads, tl.arange(0, BD), valid, NH, D)
    b_x2 = _load_rows(base, rows, heads, BD + tl.arange(0, BD2), valid, NH, D) if BD2 else b_x
    return b_x, b_x2


@triton.jit
def _zeros_parts(BM: tl.constexpr, BD: tl.constexpr, BD2: tl.constexpr):
    """fp32 accumulators for the two column parts (the second only when split)."""
    acc = tl.zeros([BM, BD], dtype=tl.float32)
    acc2 = tl.zeros([BM, BD2], dtype=tl.float32) if BD2 else acc
    return acc, acc2


@triton.jit
def _dot_qk(b_q, b_q2, b_k, b_k2, BD2: tl.constexpr):
    """q @ k^T [BM, BN] over the whole head dim: a sum of two dots when it is split."""
    s = tl.dot(b_q, tl.trans(b_k))
    if BD2 > 0:
        s = tl.dot(b_q2, tl.trans(b_k2), acc=s)
    return s


@triton.jit
def _acc_parts(acc, acc2, a, b, b2, BD2: tl.constexpr):
    """(acc, acc2) += a @ (b, b2): a gradient wrt a split head dim, part by part."""
    acc = tl.dot(a, b, acc=acc)
    if BD2 > 0:
        acc2 = tl.dot(a, b2, acc=acc2)
    return acc, acc2


@triton.jit
def _add_cols(base, flat, cols, x, valid, D: tl.constexpr, ATOMIC: tl.constexpr):
    """base[flat, cols] += x (cols < D), atomically or by load + store.

    Atomics are relaxed: they only sum, nothing reads the result before the kernel ends, and
    Triton's default (acquire-release) fences each one (H200, 64k: selection dK/dV 34.4 ->
    31.2 ms on the paper config, 8.1 -> 6.8 on qwen-1.5b)."""
    ptr = base + flat[:, None] * D + cols[None, :]
    mask = valid[:, None] & (cols[None, :] < D)
    if ATOMIC:
        tl.atomic_add(ptr, x, mask=mask, sem="relaxed")
    else:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + x, mask=mask)


@triton.jit
def _add_parts(base, flat, x, x2, valid, D: tl.constexpr, BD: tl.constexpr, BD2: tl.constexpr,
               ATOMIC: tl.constexpr):  # fmt: skip
    """base[flat, :D] += the two column parts x [*, BD] and x2 [*, BD2] (x2 ignored if BD2 = 0)."""
    _add_cols(base, flat, tl.arange(0, BD), x, valid, D, ATOMIC)
    if BD2 > 0:
        _add_cols(base, flat, BD + tl.arange(0, BD2), x2, valid, D, ATOMIC)


@triton.jit
def _dense_span(MODE: tl.constexpr, t_lo, t_hi, window, CMP_BLOCK: tl.constexpr,
                CMP_STRIDE: tl.constexpr):  # fmt: skip
    """[lo, hi) of the keys (MODE_WIN) or compressed tokens (MODE_CMP) a tile may read."""
    if MODE == 0:
        lo = t_lo * 0
        hi = tl.where(t_hi >= CMP_BLOCK - 1, (t_hi - CMP_BLOCK + 1) // CMP_STRIDE + 1, 0)
    else:
        lo = tl.maximum(t_lo - window + 1, 0)
        hi = t_hi + 1
    return lo, hi


@triton.jit
def _dense_mask(MODE: tl.constexpr, s, t, valid, kvalid, window, CMP_BLOCK: tl.constexpr,
                CMP_STRIDE: tl.constexpr):  # fmt: skip
    m = valid[:, None] & kvalid[None, :]
    if MODE == 0:
        return m & ((s * CMP_STRIDE + CMP_BLOCK - 1)[None, :] <= t[:, None])
    return m & (s[None, :] <= t[:, None]) & (s[None, :] > t[:, None] - window)


@triton.jit
def _slc_mask(s, t, member, valid, kvalid, window, UNION: tl.constexpr):
    m = (member & valid)[:, None] & kvalid[None, :] & (s[None, :] <= t[:, None])
    if UNION:
        m = m & (s[None, :] <= t[:, None] - window)
    return m


@triton.jit
def _softmax_step(b_q, b_q2, b_k, b_k2, b_v, mask, acc, m_i, l_i, scale_log2,
                  BDK2: tl.constexpr, WITH_V: tl.constexpr,
                  MASKED: tl.constexpr = True):  # fmt: skip
    """One online-softmax step over a key chunk; MASKED = False: every row sees every key."""
    s = _dot_qk(b_q, b_q2, b_k, b_k2, BDK2) * scale_log2  # [BM, BN]
    if MASKED:
        s = tl.where(mask, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_use)
    p = tl.exp2(s - m_use[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    if WITH_V:
        acc = acc * alpha[:, None] + tl.dot(p.to(b_v.dtype), b_v)
    return acc, m_new, l_i, s


@triton.jit
def _slc_fwd_loop(
    k, v, sel, ulist, ucount, U, tile, hkv, row, valid, t, t_hi, kbase, split,
    b_q, b_q2, acc, m_i, l_i, scale_log2, window,
    H_KV: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr,
    BDK2: tl.constexpr, BDV: tl.constexpr, BN: tl.constexpr, SLC_BLOCK: tl.constexpr,
    NSEL: tl.constexpr, BSEL: tl.constexpr, SPLITS: tl.constexpr, UNION: tl.constexpr,
    WITH_V: tl.constexpr,
):  # fmt: skip
    """The selection branch's online softmax over split `split` of the tile's block union."""
    dv = tl.arange(0, BDV)
    n_u = tl.load(ucount + tile * H_KV + hkv)
    per = tl.cdiv(n_u, SPLITS)
    u_hi = tl.minimum(n_u, (split + 1) * per)
    ns = tl.arange(0, BSEL)
    sel_ptr = sel + (row.to(tl.int64) * H_KV + hkv)[:, None] * NSEL + ns[None, :]
    b_sel = tl.load(sel_ptr, mask=valid[:, None] & (ns[None, :] < NSEL), other=-1)
    for u in range(split * per, u_hi):
        j = tl.load(ulist + (tile * H_KV + hkv) * U + u)
        member = tl.sum((b_sel == j).to(tl.int32), 1) > 0  # [BM]
        for sub in tl.static_range(0, SLC_BLOCK, BN):
            s = j * SLC_BLOCK + sub + tl.arange(0, BN)
            kvalid = (s < (j + 1) * SLC_BLOCK) & (s <= t_hi)
            b_k, b_k2 = _load_parts(k, kbase + s, hkv, kvalid, H_KV, DK, BDK, BDK2)
            b_v = _load_keys(v, kbase + s, hkv, dv, kvalid & WITH_V, H_KV, DV)
            mask = _slc_mask(s, t, member, valid, kvalid, window, UNION)
            acc, m_i, l_i, _ = _softmax_step(
                b_q, b_q2, b_k, b_k2, b_v, mask, acc, m_i, l_i, scale_log2, BDK2, WITH_V
            )
    return acc, m_i, l_i


@triton.jit
def _whole_cmp_chunks(t_lo, BN: tl.constexpr, CMP_BLOCK: tl.constexpr,
                      CMP_STRIDE: tl.constexpr):  # fmt: skip
    """Chunks of BN compressed tokens (from 0) that have ended by t_lo, so every row of the
    tile sees them whole and they need no mask."""
    seen = tl.where(t_lo >= CMP_BLOCK - 1, (t_lo - CMP_BLOCK + 1) // CMP_STRIDE + 1, 0)
    return seen // BN


@triton.jit
def _dense_chunks(
    k, v, logits, row, head, valid, t, lo, hi, c_lo, c_hi, kbase, hkv,
    b_q, b_q2, acc, m_i, l_i, scale_log2, window,
    H: tl.constexpr, H_KV: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
    BDK: tl.constexpr, BDK2: tl.constexpr, BDV: tl.constexpr, BN: tl.constexpr,
    MODE: tl.constexpr, CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr,
    WITH_V: tl.constexpr, LOGITS: tl.constexpr, MASKED: tl.constexpr,
):  # fmt: skip
    """Online softmax over chunks [c_lo, c_hi) of BN keys from `lo`."""
    dv = tl.arange(0, BDV)
    for ci in range(c_lo, c_hi):
        s = lo + ci * BN + tl.arange(0, BN)
        kvalid = s < hi
        b_k, b_k2 = _load_parts(k, kbase + s, hkv, kvalid, H_KV, DK, BDK, BDK2)
        b_v = _load_keys(v, kbase + s, hkv, dv, kvalid & WITH_V, H_KV, DV)
        mask = kvalid[None, :]
        if MASKED:
            mask = _dense_mask(MODE, s, t, valid, kvalid, window, CMP_BLOCK, CMP_STRIDE)
        acc, m_i, l_i, s_log2 = _softmax_step(
            b_q, b_q2, b_k, b_k2, b_v, mask, acc, m_i, l_i, scale_log2, BDK2, WITH_V, MASKED
        )
        if LOGITS:  # row r's scaled q.k of these tokens, -inf where masked
            l_ptr = logits + (row.to(tl.int64) * H + head)[:, None] * LOGITS + s[None, :]
            tl.store(l_ptr, s_log2, mask=valid[:, None] & kvalid[None, :])
    return acc, m_i, l_i


@triton.jit
def _dense_fwd_loop(
    k, v, logits, row, head, valid, t, t_lo, t_hi, kbase, hkv, split,
    b_q, b_q2, acc, m_i, l_i, scale_log2, window,
    H: tl.constexpr, H_KV: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
    BDK: tl.constexpr, BDK2: tl.constexpr, BDV: tl.constexpr, BN: tl.constexpr,
    MODE: tl.constexpr, CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr,
    SPLITS: tl.constexpr, WITH_V: tl.constexpr, LOGITS: tl.constexpr,
    PARTS: tl.constexpr = 1,
):  # fmt: skip
    """The compressed (MODE 0) or window (MODE 2) branch's online softmax over split `split`
    of the tile's key range; LOGITS > 0 also stores the scaled q.k (rows of LOGITS tokens).
    PARTS = 2 (MODE 0): the chunks every row sees whole first, with no mask (rows past the
    tile's end read zero queries and are never stored). On the window the same split lost
    (H200 64k, kernels/NOTES.md v12), so the window keeps one masked loop."""
    lo, hi = _dense_span(MODE, t_lo, t_hi, window, CMP_BLOCK, CMP_STRIDE)
    n_chunks = tl.cdiv(hi - lo, BN)
    per = tl.cdiv(n_chunks, SPLITS)
    c_lo = split * per
    c_hi = tl.minimum(n_chunks, c_lo + per)
    whole = c_lo  # chunks [c_lo, whole) need no mask
    if PARTS == 2:
        whole = _whole_cmp_chunks(t_lo, BN, CMP_BLOCK, CMP_STRIDE)
        whole = tl.minimum(tl.maximum(whole, c_lo), c_hi)
    for part in tl.static_range(PARTS):  # the whole chunks, then the masked ones
        if part == PARTS - 1:
            first, last = whole, c_hi
        else:
            first, last = c_lo, whole
        acc, m_i, l_i = _dense_chunks(
            k, v, logits, row, head, valid, t, lo, hi, first, last, kbase, hkv,
            b_q, b_q2, acc, m_i, l_i, scale_log2, window, H, H_KV, DK, DV, BDK, BDK2, BDV, BN,
            MODE, CMP_BLOCK, CMP_STRIDE, WITH_V, LOGITS, part == PARTS - 1,
        )  # fmt: skip
    return acc, m_i, l_i


@triton.jit
def _attn_fwd_kernel(
    q, k, v, o, lse,  # q [N, H, DK]; k/v [*, H_KV, D]; o [S, N, H, DV]; lse [S, N, H]
    logits,  # CMP with LOGITS: [N, H, LOGITS] fp32, q.k * scale * log2(e) of every token read
    tile_seq, tile_i0, q_start, q_len, q_pos0, kv_start,  # kv_start: k_start or c_start
    sel, ulist, ucount, U,  # MODE_SLC only
    N, scale_log2, window,
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, BT: tl.constexpr, BM: tl.constexpr,
    BN: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BDK2: tl.constexpr,  # > 0: the head dim DK is split in parts of BDK + BDK2 columns
    MODE: tl.constexpr, UNION: tl.constexpr, CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr,
    SLC_BLOCK: tl.constexpr, NSEL: tl.constexpr, BSEL: tl.constexpr, SPLITS: tl.constexpr,
    WITH_V: tl.constexpr,  # False: log-sum-exp only (the compressed branch in union mode)
    LOGITS: tl.constexpr = 0,  # > 0: store the logits, rows of this many tokens (decode)
    WIN_SPLITS: tl.constexpr = 0,  # SLC: programs of split >= SPLITS run the window branch
    PARTS: tl.constexpr = 1,  # 2 (CMP): chunks every row sees whole first, unmasked
):  # fmt: skip
    """Grid (tile, KV head, split). With WIN_SPLITS > 0 (decode) one launch runs both branches
    that read K/V: the selection's SPLITS splits, then the window's WIN_SPLITS, stored as
    splits SPLITS .. SPLITS + WIN_SPLITS - 1 of o and lse."""
    tile = tl.program_id(0)
    hkv = tl.program_id(1)
    split = tl.program_id(2)
    b = tl.load(tile_seq + tile)
    i0 = tl.load(tile_i0 + tile)
    ql = tl.load(q_len + b)
    pos0 = tl.load(q_pos0 + b)
    kbase = tl.load(kv_start + b)
    r = tl.arange(0, BM)
    i = r // G
    valid = (i < BT) & (i0 + i < ql)
    row = tl.load(q_start + b) + i0 + i  # [BM]
    head = hkv * G + r % G
    t = pos0 + i0 + i  # absolute position of each row
    t_lo = pos0 + i0
    t_hi = t_lo + tl.minimum(BT, ql - i0) - 1
    dv = tl.arange(0, BDV)
    b_q, b_q2 = _load_parts(q, row, head, valid, H, DK, BDK, BDK2)  # [BM, BDK], [BM, BDK2]
    acc = tl.zeros([BM, BDV], dtype=tl.float32)
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    if MODE == 1:
        if split < SPLITS:
            acc, m_i, l_i = _slc_fwd_loop(
                k, v, sel, ulist, ucount, U, tile, hkv, row, valid, t, t_hi, kbase, split,
                b_q, b_q2, acc, m_i, l_i, scale_log2, window, H_KV, DK, DV, BDK, BDK2, BDV,
                BN, SLC_BLOCK, NSEL, BSEL, SPLITS, UNION, WITH_V,
            )  # fmt: skip
        elif WIN_SPLITS > 0:
            acc, m_i, l_i = _dense_fwd_loop(
                k, v, logits, row, head, valid, t, t_lo, t_hi, kbase, hkv, split - SPLITS,
                b_q, b_q2, acc, m_i, l_i, scale_log2, window, H, H_KV, DK, DV, BDK, BDK2,
                BDV, BN, 2, CMP_BLOCK, CMP_STRIDE, WIN_SPLITS, WITH_V, 0,  # MODE 2: the window
            )  # fmt: skip
    else:
        acc, m_i, l_i = _dense_fwd_loop(
            k, v, logits, row, head, valid, t, t_lo, t_hi, kbase, hkv, split,
            b_q, b_q2, acc, m_i, l_i, scale_log2, window, H, H_KV, DK, DV, BDK, BDK2, BDV,
            BN, MODE, CMP_BLOCK, CMP_STRIDE, SPLITS, WITH_V, LOGITS, PARTS,
        )  # fmt: skip
    seen = l_i > 0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    b_lse = tl.where(seen, (m_i + tl.log2(tl.where(seen, l_i, 1.0))) * _LN2, float("-inf"))
    flat = split.to(tl.int64) * N * H + row.to(tl.int64) * H + head  # [BM]
    o_ptr = o + flat[:, None] * DV + dv[None, :]
    if WITH_V:
        tl.store(o_ptr, out.to(o.dtype.element_ty), mask=valid[:, None] & (dv[None, :] < DV))
    tl.store(lse + flat, b_lse, mask=valid)


@triton.jit
def _attn_dq_kernel(
    q, k, v, do, lse, delta, dq,  # dq [N, H, DK] fp32, accumulated into
    tile_seq, tile_i0, q_start, q_len, q_pos0, kv_start,
    sel, ulist, ucount, U,
    scale_log2, scale, window,
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, BT: tl.constexpr, BM: tl.constexpr,
    BN: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BDK2: tl.constexpr,  # > 0: the head dim DK is split in parts of BDK + BDK2 columns
    MODE: tl.constexpr, UNION: tl.constexpr, CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr,
    SLC_BLOCK: tl.constexpr, NSEL: tl.constexpr, BSEL: tl.constexpr,
    PARTS: tl.constexpr = 1,  # 2 (CMP): the chunks every row sees whole first, unmasked
):  # fmt: skip
    """Grid (tile, KV head): dQ of a tile's rows. Rows past the tile's end load zero do and
    delta, so they add nothing where the mask is skipped."""
    tile = tl.program_id(0)
    hkv = tl.program_id(1)
    b = tl.load(tile_seq + tile)
    i0 = tl.load(tile_i0 + tile)
    ql = tl.load(q_len + b)
    pos0 = tl.load(q_pos0 + b)
    kbase = tl.load(kv_start + b)
    r = tl.arange(0, BM)
    i = r // G
    valid = (i < BT) & (i0 + i < ql)
    row = tl.load(q_start + b) + i0 + i
    head = hkv * G + r % G
    t = pos0 + i0 + i
    t_lo = pos0 + i0
    t_hi = t_lo + tl.minimum(BT, ql - i0) - 1
    dv = tl.arange(0, BDV)
    b_q, b_q2 = _load_parts(q, row, head, valid, H, DK, BDK, BDK2)
    b_do, b_lse, b_delta, flat = _load_grad_rows(do, lse, delta, row, head, valid, dv, H, DV)
    acc, acc2 = _zeros_parts(BM, BDK, BDK2)  # dQ [BM, BDK], [BM, BDK2]
    if MODE == 1:
        n_u = tl.load(ucount + tile * H_KV + hkv)
        ns = tl.arange(0, BSEL)
        sel_ptr = sel + (row.to(tl.int64) * H_KV + hkv)[:, None] * NSEL + ns[None, :]
        b_sel = tl.load(sel_ptr, mask=valid[:, None] & (ns[None, :] < NSEL), other=-1)
        for u in range(0, n_u):
            j = tl.load(ulist + (tile * H_KV + hkv) * U + u)
            member = tl.sum((b_sel == j).to(tl.int32), 1) > 0
            for sub in tl.static_range(0, SLC_BLOCK, BN):
                s = j * SLC_BLOCK + sub + tl.arange(0, BN)
                kvalid = (s < (j + 1) * SLC_BLOCK) & (s <= t_hi)
                b_k, b_k2 = _load_parts(k, kbase + s, hkv, kvalid, H_KV, DK, BDK, BDK2)
                b_v = _load_keys(v, kbase + s, hkv, dv, kvalid, H_KV, DV)
                mask = _slc_mask(s, t, member, valid, kvalid, window, UNION)
                qk = _dot_qk(b_q, b_q2, b_k, b_k2, BDK2)
                p = tl.where(mask, tl.exp2(qk * scale_log2 - b_lse[:, None]), 0.0)
                ds = p * (tl.dot(b_do, tl.trans(b_v)) - b_delta[:, None])
                acc, acc2 = _acc_parts(acc, acc2, ds.to(b_k.dtype), b_k, b_k2, BDK2)
    else:
        lo, hi = _dense_span(MODE, t_lo, t_hi, window, CMP_BLOCK, CMP_STRIDE)
        n_chunks = tl.cdiv(hi - lo, BN)
        whole = n_chunks * 0  # chunks [0, whole) every row sees whole: no mask
        if PARTS == 2:
            whole = tl.minimum(_whole_cmp_chunks(t_lo, BN, CMP_BLOCK, CMP_STRIDE), n_chunks)
        for part in tl.static_range(PARTS):
            if part == PARTS - 1:
                first, last = whole, n_chunks
            else:
                first, last = 0, whole
            for ci in range(first, last):
                s = lo + ci * BN + tl.arange(0, BN)
                kvalid = s < hi
                b_k, b_k2 = _load_parts(k, kbase + s, hkv, kvalid, H_KV, DK, BDK, BDK2)
                b_v = _load_keys(v, kbase + s, hkv, dv, kvalid, H_KV, DV)
                qk = _dot_qk(b_q, b_q2, b_k, b_k2, BDK2)
                p = tl.exp2(qk * scale_log2 - b_lse[:, None])
                if part == PARTS - 1:
                    mask = _dense_mask(MODE, s, t, valid, kvalid, window, CMP_BLOCK, CMP_STRIDE)
                    p = tl.where(mask, p, 0.0)
                ds = p * (tl.dot(b_do, tl.trans(b_v)) - b_delta[:, None])
                acc, acc2 = _acc_parts(acc, acc2, ds.to(b_k.dtype), b_k, b_k2, BDK2)
    _add_parts(dq, flat, acc * scale, acc2 * scale, valid, DK, BDK, BDK2, False)


@triton.jit
def _attn_dkdv_kernel(
    q, k, v, do, lse, delta, dk_out, dv_out,  # dk_out/dv_out [*, H_KV, D] fp32, accumulated
    tile_i0, q_start, q_len, q_pos0, kv_start, kv_len,
    w_seq, w_a, w_b, w_start, w_len, w_tiles,  # SLC: work items; else key tiles (w_seq, w_a=s0)
    sel, scale_log2, scale, window, n_splits,
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, BT: tl.constexpr, BM: tl.constexpr,
    BN: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BDK2: tl.constexpr,  # > 0: the head dim DK is split in parts of BDK + BDK2 columns
    MODE: tl.constexpr, UNION: tl.constexpr, CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr,
    SLC_BLOCK: tl.constexpr, NSEL: tl.constexpr, BSEL: tl.constexpr, ATOMIC: tl.constexpr,
    TPS: tl.constexpr,  # SLC: query tiles gathered per step (BM rows each)
    PARTS: tl.constexpr = 1,  # 2 (CMP): the query steps that see the key tile whole unmasked
):  # fmt: skip
    pid = tl.program_id(0)
    b = tl.load(w_seq + pid)
    ql = tl.load(q_len + b)
    pos0 = tl.load(q_pos0 + b)
    qbase = tl.load(q_start + b)
    kbase = tl.load(kv_start + b)
    if MODE == 1:
        hkv = tl.load(w_b + pid)
        j = tl.load(w_a + pid)
        s = j * SLC_BLOCK + tl.program_id(1) * BN + tl.arange(0, BN)
        kvalid = (s < (j + 1) * SLC_BLOCK) & (s < tl.load(kv_len + b))
        it_lo = 0
        it_hi = tl.load(w_len + pid)
        first = tl.load(w_start + pid)
    else:
        hkv = tl.program_id(1)
        s0 = tl.load(w_a + pid)
        s = s0 + tl.arange(0, BN)
        kvalid = s < tl.load(kv_len + b)
        if MODE == 0:
            i_first = tl.maximum(s0 * CMP_STRIDE + CMP_BLOCK - 1 - pos0, 0)
            i_end = ql
        else:
            i_first = tl.maximum(s0 - pos0, 0)
            i_end = tl.minimum(ql, s0 + BN - 1 + window - pos0)
        # the query steps of this key tile are shared out over n_splits programs
        n_iter = tl.cdiv(i_end - i_first, BT)
        per = tl.cdiv(n_iter, n_splits)
        it_lo = tl.program_id(2) * per
        it_hi = tl.minimum(n_iter, it_lo + per)
    dv = tl.arange(0, BDV)
    b_k, b_k2 = _load_parts(k, kbase + s, hkv, kvalid, H_KV, DK, BDK, BDK2)  # [BN, BDK], [BN, BDK2]
    b_v = _load_keys(v, kbase + s, hkv, dv, kvalid, H_KV, DV)
    acc_k, acc_k2 = _zeros_parts(BN, BDK, BDK2)
    acc_v = tl.zeros([BN, BDV], dtype=tl.float32)
    r = tl.arange(0, BM * TPS)
    i = (r % BM) // G  # position inside its tile
    head = hkv * G + (r % BM) % G
    ns = tl.arange(0, BSEL)
    n_steps = tl.cdiv(it_hi - it_lo, TPS)
    masked = n_steps  # steps [masked, n_steps) see the key tile whole: no mask
    if PARTS == 2:  # MODE 0, one tile a step: from the first row that sees the last key
        whole_from = (s0 + BN - 1) * CMP_STRIDE + CMP_BLOCK - 1 - pos0
        masked = tl.cdiv(tl.maximum(whole_from - i_first, 0), BT) - it_lo
        masked = tl.minimum(tl.maximum(masked, 0), n_steps)
    for part in tl.static_range(PARTS):
        if part == 0:
            step_lo, step_hi = 0, masked
        else:
            step_lo, step_hi = masked, n_steps
        for step in range(step_lo, step_hi):
            it = it_lo + step * TPS
            if MODE == 1:  # rows r of tile slot it + r // BM of the work item
                slot = it + r // BM
                busy = slot < it_hi
                i0 = tl.load(tile_i0 + tl.load(w_tiles + first + slot, mask=busy, other=0))
                valid = busy & (i < BT) & (i0 + i < ql)
            else:
                i0 = i_first + it * BT
                valid = (i < BT) & (i0 + i < ql)
            row = qbase + i0 + i
            t = pos0 + i0 + i
            b_q, b_q2 = _load_parts(q, row, head, valid, H, DK, BDK, BDK2)
            b_do, b_lse, b_delta, _ = _load_grad_rows(do, lse, delta, row, head, valid, dv, H, DV)
            qk = _dot_qk(b_q, b_q2, b_k, b_k2, BDK2)
            p = tl.exp2(qk * scale_log2 - b_lse[:, None])
            if MODE == 1:
                sel_ptr = sel + (row.to(tl.int64) * H_KV + hkv)[:, None] * NSEL + ns[None, :]
                b_sel = tl.load(sel_ptr, mask=valid[:, None] & (ns[None, :] < NSEL), other=-1)
                member = tl.sum((b_sel == j).to(tl.int32), 1) > 0
                p = tl.where(_slc_mask(s, t, member, valid, kvalid, window, UNION), p, 0.0)
            elif part == 0:
                mask = _dense_mask(MODE, s, t, valid, kvalid, window, CMP_BLOCK, CMP_STRIDE)
                p = tl.where(mask, p, 0.0)
            acc_v += tl.dot(tl.trans(p).to(b_do.dtype), b_do)
            ds = p * (tl.dot(b_do, tl.trans(b_v)) - b_delta[:, None])
            acc_k, acc_k2 = _acc_parts(acc_k, acc_k2, tl.trans(ds).to(b_q.dtype), b_q, b_q2, BDK2)
    kflat = (kbase + s).to(tl.int64) * H_KV + hkv
    if ATOMIC:
        if it_hi > it_lo:  # a split past the end of its key tile's range adds nothing
            _add_parts(dk_out, kflat, acc_k * scale, acc_k2 * scale, kvalid, DK, BDK, BDK2, True)
            _add_cols(dv_out, kflat, dv, acc_v, kvalid, DV, True)
    else:
        _add_parts(dk_out, kflat, acc_k * scale, acc_k2 * scale, kvalid, DK, BDK, BDK2, False)
        _add_cols(dv_out, kflat, dv, acc_v, kvalid, DV, False)


def tile_rows(G: int, block_m: int) -> tuple[int, int]:
    """(BM rows, BT positions) of a tile: BT positions x G heads fill at most BM >= 16 rows."""
    BM = max(block_m, triton.next_power_of_2(G), 16)
    return BM, BM // G


def slc_step_tiles(G: int, block_m: int) -> int:
    """Selection tiles (of tile_rows(G, block_m)) that one dK/dV step gathers."""
    return max(1, SLC_STEP_ROWS // tile_rows(G, block_m)[0])


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def head_parts(D: int, split: bool) -> tuple[int, int]:
    """Tile widths (BD, BD2) covering a head dim D: tl.arange needs powers of two.

    Unsplit: (D padded to a power of two, 0). Split: the largest power of two <= D and the rest
    padded (192 = 128 + 64, 96 = 64 + 32, 48 = 32 + 16), so a tile loads and multiplies D
    columns instead of 256 / 128 / 64; kept unsplit where that saves nothing (a power of two,
    or 112 -> 64 + 64), and no part is narrower than 16 (tl.dot's minimum K).
    """
    if not split or D <= 16:
        return _pad(D), 0
    first = 1 << (D.bit_length() - 1)
    second = _pad(D - first) if first < D else 0
    if second == 0 or first + second >= _pad(D):
        return _pad(D), 0
    return first, second


def _dims(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, split_dk: bool = False) -> dict:
    _N, H, DK = q.shape
    H_KV, DV = k.shape[1], v.shape[2]
    BDK, BDK2 = head_parts(DK, split_dk)
    return dict(H=H, H_KV=H_KV, G=H // H_KV, DK=DK, DV=DV, BDK=BDK, BDK2=BDK2, BDV=_pad(DV))


def _consts(cfg: NSAConfig, mode: int) -> dict:
    return dict(MODE=mode, UNION=cfg.combine == "union", CMP_BLOCK=cfg.cmp_block,
                CMP_STRIDE=cfg.cmp_stride, SLC_BLOCK=cfg.slc_block, NSEL=cfg.n_selected,
                BSEL=triton.next_power_of_2(cfg.n_selected))  # fmt: skip


def _warps(d: dict, BM: int) -> int:
    """Wide heads (the paper's Dk = 192: padded to 256, or split 128 + 64) or tall tiles need
    8 warps."""
    return 8 if max(d["BDK"] + d["BDK2"], d["BDV"]) >= 192 or BM >= 128 else 4


@dataclass(frozen=True)
class Launch:
    """Triton launch options for one kernel call; 0 takes the default of `_plan`.
    bench/kernels.py's `launch` part sweeps them."""

    num_warps: int = 0
    num_stages: int = 0

    def options(self, warps: int = 0, stages: int = 0) -> dict:
        """Triton's launch keywords: these settings over the defaults given (0 for a
        default: Triton's own)."""
        opts = {}
        if self.num_warps or warps:
            opts["num_warps"] = self.num_warps or warps
        if self.num_stages or stages:
            opts["num_stages"] = self.num_stages or stages
        return opts


def _plan(
    kind: str, cfg: NSAConfig, mode: int, d: dict, BM: int, block_n: int, launch: Launch | None
) -> tuple[int, dict]:
    """(keys per step BN, launch options) of one kernel call: `kind` is fwd, dq or dkdv.

    Defaults from the H200 sweep at 64k (bench/results/kernels-launch-*.json, kernels/NOTES.md
    v6), by how wide a row of q, k and v is. The backward kernels hold dQ or dK/dV in registers
    and run best on 4 warps with a shallow pipeline: rows over 256 columns (the paper's 192 +
    128) take 32 keys per step and 3 stages (dQ of the compressed branch 36.0 -> 19.2 ms),
    rows of 128 + 128 take 64 keys and 2 stages (its dK/dV 10.2 -> 6.7 ms), narrower rows 3.
    The selection forward on wide rows: 4 warps, 2 stages (31.2 -> 23.5 ms). The compressed
    forward's prefill tiles on rows of <= 128 columns: 1 stage (qwen-0.5b's 64 + 64: 1.92 ->
    1.68 ms; v13, bench/results/kernels-v13-launch-ab-h200.json; decode's 16-row tiles keep
    theirs). Elsewhere the forward keeps 64 keys and `_warps`, with Triton's default
    pipelining.
    """
    width = d["BDK"] + d["BDK2"] + d["BDV"]
    warps, stages, bn = _warps(d, BM), 0, 64
    if kind != "fwd":
        warps, stages, bn = 4, 2 if width == 256 else 3, 32 if width > 256 else 64
    elif mode == MODE_SLC and width > 256:
        warps, stages = 4, 2
    elif mode == MODE_CMP and width <= 128 and BM >= 64:
        stages = 1
    bn = block_n or bn
    if mode == MODE_SLC:
        bn = max(16, min(bn, triton.next_power_of_2(cfg.slc_block)))
    return bn, (launch or Launch()).options(warps, stages)


def _tiles(meta: SeqMeta, mode: int, BT: int, sel: Selection | None, device):
    if mode == MODE_SLC:
        assert sel is not None and sel.rows_per_tile == BT, "selection built for other tiles"
        return sel.tile_seq, sel.tile_i0, sel.idx, sel.ulist, sel.ucount, sel.ulist.shape[-1]
    tile_seq, tile_i0 = query_tiles(meta, BT, device)
    return tile_seq, tile_i0, tile_seq, tile_seq, tile_seq, 0


def attn_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: SeqMeta, cfg: NSAConfig, mode: int,
    scale: float, sel: Selection | None = None, splits: int = 1, block_m: int = 64,
    block_n: int = 0, out_dtype: torch.dtype | None = None, with_output: bool = True,
    split_dk: bool = False, launch: Launch | None = None, logits: torch.Tensor | None = None,
    win_splits: int = 0,
) -> tuple[torch.Tensor | None, torch.Tensor]:  # fmt: skip
    """One branch forward. Returns o [S, N, H, Dv] and lse [S, N, H] (fp32) for S splits;
    with_output=False skips the values and returns (None, lse). split_dk: tiles over Dk in
    two power-of-two parts (head_parts) instead of one padded tile. logits [N, H, C] (CMP
    only): also stores each row's q.k * scale * log2(e) for the compressed tokens it reads, so
    the block scores need not read Kc again (decode; select.slc_scores). win_splits (SLC
    only): the same launch also runs the window branch in that many splits, returned as
    splits `splits` .. `splits + win_splits - 1` (decode: one launch instead of two)."""
    assert logits is None or mode == MODE_CMP, "logits are the compressed branch's"
    assert not win_splits or mode == MODE_SLC, "the window rides on the selection's launch"
    d = _dims(q, k, v, split_dk)
    BM, BT = tile_rows(d["G"], block_m)
    BN, opts = _plan("fwd", cfg, mode, d, BM, block_n, launch)
    tile_seq, tile_i0, idx, ulist, ucount, U = _tiles(meta, mode, BT, sel, q.device)
    N = q.shape[0]
    S = splits + win_splits
    o_shape = (S, N, d["H"], d["DV"]) if with_output else (1,)
    o = torch.empty(o_shape, device=q.device, dtype=out_dtype or q.dtype)
    lse = torch.empty(S, N, d["H"], device=q.device, dtype=torch.float32)
    kv_start = meta.c_start if mode == MODE_CMP else meta.k_start
    grid = (tile_seq.numel(), d["H_KV"], S)
    _attn_fwd_kernel[grid](
        q, k, v, o, lse, lse if logits is None else logits, tile_seq, tile_i0, meta.q_start,
        meta.q_len, meta.q_pos0, kv_start, idx, ulist, ucount, U, N, scale * LOG2E, cfg.window,
        BT=BT, BM=BM, BN=BN, SPLITS=splits, WITH_V=with_output,
        LOGITS=0 if logits is None else logits.shape[-1], WIN_SPLITS=win_splits,
        PARTS=_parts(mode, d, "fwd") if logits is None else 1, **d,
        **_consts(cfg, mode), **opts,
    )  # fmt: skip
    return (o if with_output else None), lse


def attn_dq(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, lse: torch.Tensor,
    delta: torch.Tensor, dq: torch.Tensor, meta: SeqMeta, cfg: NSAConfig, mode: int,
    scale: float, sel: Selection | None = None, block_m: int = 64, block_n: int = 0,
    split_dk: bool = False, launch: Launch | None = None,
) -> None:  # fmt: skip
    """Adds one branch's dQ into dq [N, H, Dk] (fp32). do [N, H, Dv]; lse, delta [N, H]."""
    d = _dims(q, k, v, split_dk)
    BM, BT = tile_rows(d["G"], block_m)
    BN, opts = _plan("dq", cfg, mode, d, BM, block_n, launch)
    tile_seq, tile_i0, idx, ulist, ucount, U = _tiles(meta, mode, BT, sel, q.device)
    kv_start = meta.c_start if mode == MODE_CMP else meta.k_start
    _attn_dq_kernel[(tile_seq.numel(), d["H_KV"])](
        q, k, v, do, lse, delta, dq, tile_seq, tile_i0, meta.q_start, meta.q_len, meta.q_pos0,
        kv_start, idx, ulist, ucount, U, scale * LOG2E, scale, cfg.window,
        BT=BT, BM=BM, BN=BN, PARTS=_parts(mode, d, "dq"), **d, **_consts(cfg, mode), **opts,
    )  # fmt: skip


def _parts(mode: int, d: dict, kind: str) -> int:
    """Loop parts of a compressed-branch kernel (`kind` fwd, dq or dkdv): the chunks every row
    sees whole, unmasked, and the masked rest (UNMASKED_FULL_CHUNKS); one masked loop for the
    other branches, and in the backward on rows wider than 256 columns (the paper's 192 +
    128), where two loops ran slower on the H200 at 64k (dQ 19.3 -> 21.0 ms, dK/dV 42.8 ->
    48.5; qwen-1.5b 3.18 -> 2.77 and 5.91 -> 5.42; kernels/NOTES.md v12)."""
    narrow = d["BDK"] + d["BDK2"] + d["BDV"] <= 256
    return 2 if mode == MODE_CMP and UNMASKED_FULL_CHUNKS and (narrow or kind == "fwd") else 1


def attn_dkdv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, lse: torch.Tensor,
    delta: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor, meta: SeqMeta, cfg: NSAConfig,
    mode: int, scale: float, sel: Selection | None = None, work=None, block_m: int = 64,
    block_n: int = 0, query_steps: int = DKDV_QUERY_STEPS, split_dk: bool = False,
    launch: Launch | None = None,
) -> None:  # fmt: skip
    """Adds one branch's dK/dV into dk, dv ([*, H_kv, D], fp32).

    CMP/WIN: programs per BN keys of one KV head, the query range split so no program takes more
    than DKDV_QUERY_STEPS steps (atomically added when split). The split count comes from the
    longest range a key tile can have: the whole sequence for CMP, w + BN - 1 for WIN (v3 split
    the window by the sequence length too: 128 mostly idle programs per key tile, all adding
    atomically, 17.7 -> 122.9 ms at 64k on the paper config). SLC: one program per work item of
    select.slc_work (a block and a list of query tiles that read it), atomically added; each
    step gathers slc_step_tiles(G, block_m) of its tiles (build the work with that many).
    """
    d = _dims(q, k, v, split_dk)
    BM, BT = tile_rows(d["G"], block_m)
    BN, opts = _plan("dkdv", cfg, mode, d, BM, block_n, launch)
    n_splits = 1
    if mode == MODE_SLC:
        assert sel is not None and work is not None and sel.rows_per_tile == BT
        w_seq, w_blk, w_hkv, w_start, w_len, w_tiles = work
        grid = (w_seq.numel(), triton.cdiv(cfg.slc_block, BN))
        kv_start, kv_len, tile_i0, idx = (
            meta.k_start,
            meta.derived(("lens", meta.k_lens), lambda: device_i32(meta.k_lens, q.device)),
            sel.tile_i0,
            sel.idx,
        )
    else:
        kv_lens = meta.c_lens if mode == MODE_CMP else meta.k_lens
        w_seq, w_blk = meta.derived(
            ("tiles", kv_lens, BN), lambda: make_tiles(kv_lens, BN, q.device)
        )
        w_hkv = w_start = w_len = w_tiles = tile_i0 = idx = w_seq
        # a compressed key tile is read by every later query (up to T / BT steps); a window
        # key tile only by the w + BN - 1 queries after it, so it rarely needs a split
        steps = max(meta.q_lens)
        if mode == MODE_WIN:
            steps = min(steps, cfg.window + BN - 1)
        n_splits = max(1, triton.cdiv(steps, BT * query_steps))
        grid = (w_seq.numel(), d["H_KV"], n_splits)
        kv_start = meta.c_start if mode == MODE_CMP else meta.k_start
        kv_len = meta.derived(("lens", kv_lens), lambda: device_i32(kv_lens, q.device))
    if grid[0] == 0:
        return
    _attn_dkdv_kernel[grid](
        q, k, v, do, lse, delta, dk, dv, tile_i0, meta.q_start, meta.q_len, meta.q_pos0,
        kv_start, kv_len, w_seq, w_blk, w_hkv, w_start, w_len, w_tiles, idx,
        scale * LOG2E, scale, cfg.window, n_splits, BT=BT, BM=BM, BN=BN,
        ATOMIC=mode == MODE_SLC or n_splits > 1,
        TPS=slc_step_tiles(d["G"], block_m) if mode == MODE_SLC else 1,
        PARTS=_parts(mode, d, "dkdv"), **d, **_consts(cfg, mode), **opts,
    )  # fmt: skip
