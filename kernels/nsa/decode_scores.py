"""Decode's block scores (Eq. 8-10) from the compressed pass's logits, in one light pass.

At decode the compressed pass (attention.attn_fwd with `logits=`) has stored each head's
scaled q.k for every compressed token, and its per-split log-sum-exps. This pass merges those
few splits itself (so no merge kernel runs between the two), turns the logits of a KV head's
G query heads into probabilities, sums the heads (Eq. 10), maps the compressed tokens onto
selection blocks (Eq. 9) and writes the [B, H_kv, N_slc] score table that top-n reads: the
same values as select.slc_scores, whose prefill kernel recomputes q.Kc and carries the
Eq. 9 spill between steps. Here a program owns BJ whole selection blocks and walks the G
heads in an unrolled loop, one contiguous logits row each, so its loads are independent and
issued at once, and the head sum stays in registers; the spill into each block (the previous
block's last L - 1 units) is a second, small load from L1/L2, so no carry links programs.
H200, 64k, batch 32, paper config: 11.6 us (v7's tiled kernel 42.1; a [G, blocks, units] tile
summed across warps 54.8).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention import _LOG2E
from .config import NSAConfig
from .select import _check_units
from .varlen import SeqMeta

# selection blocks per program and warps: bench/kernels.py --parts decode_scores (H200, 64k,
# 16..128 x 2..8): 64 x 4 was the fastest step for the paper config at batch 32 (0.201-0.205
# ms in two measurements) and within 5% of qwen-1.5b's best (32 x 4); 8 warps cost up to 20%
DECODE_SCORE_BLOCKS = 64
DECODE_SCORE_WARPS = 4


@triton.jit
def _probs(logits, row, lse2, c, t, cl,
           CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr):  # fmt: skip
    """One head's compressed probabilities at tokens c (any shape) from its logits row; 0 where
    token c is not visible to the query at position t (it ends after t, or c >= cl)."""
    vis = (c >= 0) & (c < cl) & (c * CMP_STRIDE + CMP_BLOCK - 1 <= t)
    s = tl.load(logits + row + c, mask=vis, other=float("-inf"))  # log2 units
    return tl.where(vis, tl.exp2(s - lse2), 0.0)


@triton.jit
def _decode_scores_kernel(
    logits, lse_part, scores,  # logits [B, H, C] fp32, log2 units; lse_part [S, B, H]
    q_pos0, c_len, B, C, NS,  # scores [B, H_KV, NS]
    H: tl.constexpr, H_KV: tl.constexpr, G: tl.constexpr, GP: tl.constexpr,
    S: tl.constexpr, BS: tl.constexpr, BJ: tl.constexpr,
    CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr, SLC_BLOCK: tl.constexpr,
    L_UNITS: tl.constexpr, R_UNITS: tl.constexpr, SPILL: tl.constexpr, BSPILL: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    hkv = tl.program_id(1)
    jc = tl.program_id(2)
    g = tl.arange(0, GP)
    row_head = b.to(tl.int64) * H + hkv * G + g  # [GP]
    # the compressed log-sum-exp of each head (log2 units), merged over the S key splits
    sp = tl.arange(0, BS)
    p_lse = lse_part + (sp.to(tl.int64)[:, None] * B * H + row_head[None, :])
    b_lse = tl.load(p_lse, mask=(sp < S)[:, None] & (g < G)[None, :], other=float("-inf"))
    mx = tl.max(b_lse, 0)  # [GP]
    safe = tl.where(mx == float("-inf"), 0.0, mx)
    lse2 = safe * _LOG2E + tl.log2(tl.sum(tl.exp2((b_lse - safe[None, :]) * _LOG2E), 0))
    lse2 = tl.where(mx == float("-inf"), 0.0, lse2)  # no visible token: every p is masked
    t = tl.load(q_pos0 + b)
    cl = tl.load(c_len + b)
    j = jc * BJ + tl.arange(0, BJ)  # [BJ] selection blocks
    u = tl.arange(0, R_UNITS)
    c = j[:, None] * R_UNITS + u[None, :]  # [BJ, R]: the compressed tokens starting in block j
    # Eq. 9 with l <= l': the token at unit u of block j lies min(L, R - u) units inside it;
    # the last SPILL = L - 1 units of block j - 1 reach k + 1 units into block j
    k = tl.arange(0, BSPILL)
    c_prev = j[:, None] * R_UNITS - SPILL + k[None, :]  # [BJ, BSPILL]
    c_prev = tl.where(k[None, :] < SPILL, c_prev, -1)
    own = tl.zeros([BJ, R_UNITS], dtype=tl.float32)
    prev = tl.zeros([BJ, BSPILL], dtype=tl.float32)
    # head by head (Eq. 10 sums them): each a contiguous row, the loads independent and unrolled
    for h in tl.static_range(G):
        row = (b.to(tl.int64) * H + hkv * G + h) * C
        lse2_h = tl.sum(tl.where(g == h, lse2, 0.0), 0)
        own += _probs(logits, row, lse2_h, c, t, cl, CMP_BLOCK, CMP_STRIDE)
        if SPILL > 0:
            prev += _probs(logits, row, lse2_h, c_prev, t, cl, CMP_BLOCK, CMP_STRIDE)
    w_in = tl.minimum(L_UNITS, R_UNITS - u).to(tl.float32)
    score = tl.sum(own * w_in[None, :], 1) + tl.sum(prev * (k + 1).to(tl.float32)[None, :], 1)
    cur = t // SLC_BLOCK
    score = tl.where((j == 0) | (j == cur) | (j == cur - 1), float("inf"), score)
    score = tl.where(j > cur, float("-inf"), score)
    tl.store(scores + (b.to(tl.int64) * H_KV + hkv) * NS + j, score, mask=j < NS)


def decode_scores(
    logits: torch.Tensor, lse_part: torch.Tensor, meta: SeqMeta, cfg: NSAConfig, H_KV: int,
    blocks_per_program: int | None = None, num_warps: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """Block scores [B, H_kv, N_slc] fp32 of each sequence's newest token (forced +inf, future
    -inf), equal to select.slc_scores at that position.

    logits [B, H, C]: the compressed pass's q.k * scale * log2(e) per compressed token (only
    the visible ones are read); lse_part [S, B, H]: its per-split log-sum-exps (natural log).
    blocks_per_program and num_warps (default DECODE_SCORE_BLOCKS / _WARPS, read at each call
    so bench/kernels.py's sweep can set them for a whole decode step).
    """
    blocks_per_program = blocks_per_program or DECODE_SCORE_BLOCKS
    num_warps = num_warps or DECODE_SCORE_WARPS
    L, R = _check_units(cfg)
    B, H, C = logits.shape
    S = lse_part.shape[0]
    G = H // H_KV
    NS = max(cfg.num_slc_blocks(n) for n in meta.k_lens)
    BJ = min(blocks_per_program, triton.next_power_of_2(NS))
    scores = torch.empty(B, H_KV, NS, device=logits.device, dtype=torch.float32)
    _decode_scores_kernel[(B, H_KV, triton.cdiv(NS, BJ))](
        logits, lse_part, scores, meta.q_pos0, meta.c_len, B, C, NS,
        H=H, H_KV=H_KV, G=G, GP=triton.next_power_of_2(G), S=S,
        BS=triton.next_power_of_2(S), BJ=BJ, CMP_BLOCK=cfg.cmp_block,
        CMP_STRIDE=cfg.cmp_stride, SLC_BLOCK=cfg.slc_block, L_UNITS=L, R_UNITS=R,
        SPILL=L - 1, BSPILL=max(1, triton.next_power_of_2(L - 1)), num_warps=num_warps,
    )  # fmt: skip
    return scores
