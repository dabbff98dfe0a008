"""The NSA op: one autograd.Function over the Triton kernels and the public `nsa_attention`.

Forward: compressed attention (o, lse) -> block scores -> top-n -> selected-block attention
(walked by query tile over each tile's block union, or for G < 16 by block: slc_by_block.py)
-> sliding window -> combine. Backward reruns each branch's dQ and dK/dV kernels (the
selection branch by default walked by block, one kernel for both); the selection itself is
discrete and gets no gradient (as in the paper), so in `union` mode the compressed
keys/values receive none.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import torch

from ..errors import KernelsUserError
from .attention import (
    DKDV_QUERY_STEPS,
    MODE_CMP,
    MODE_SLC,
    MODE_WIN,
    Selection,
    attn_dkdv,
    attn_dq,
    attn_fwd,
    slc_step_tiles,
)
from .combine import gated_combine, gated_combine_bwd, row_dot, union_merge
from .config import NSAConfig
from .select import build_selection, slc_scores, slc_work, top_n
from .slc_by_block import (
    position_lists,
    positions_per_step,
    slc_bwd_by_block,
    slc_fwd_by_block,
)
from .varlen import cmp_cu_seqlens, prefill_meta


@dataclass(frozen=True)
class KernelTuning:
    """Tile sizes: rows per tile (positions x G heads) for each branch, keys per step.

    Defaults come from bench/kernels.py's sweep on an H200 at 64k (kernels/NOTES.md):
    128-row tiles for the compressed and window branches; for the selection branch 16 rows
    (one position for G = 16, two for G = 6 or 7) when G >= 6, 64 rows below. The v3 sweep
    picked 16 rows for G = 16, 7 and 6 alike (qwen-1.5b forward 8.8 ms vs 10.5 ms at 64 rows;
    v3-v4 had 64 rows as the default for G < 16 regardless); G < 6 was not swept.
    block_m_slc = 0 picks that by G.

    split_head_dim: tile a Dk that is not a power of two in two power-of-two parts (192 =
    128 + 64) instead of padding it (192 -> 256), in every kernel that dots over Dk
    (attention.head_parts). On the H200 at 64k it ran the paper config's module 1.21x faster
    forward and backward (kernels/NOTES.md, v5), so it is on by default.

    block_n: keys per step; 0 takes attention._plan's choice for the kernel and head widths
    (with its measured launch options).

    slc_by_block / slc_bwd_by_block: walk the selection branch's forward / backward by block
    (slc_by_block.py: each block's K/V read once, the queries that chose it gathered) instead
    of by query tile. None: the forward by block for G < 16, where a tile's positions share
    few blocks, the backward by block always. On the H200 at 64k (kernels/NOTES.md, v11) the
    qwen-1.5b branch took 5.0 ms forward / 6.7 backward by block against 8.4 / 16.5 by query
    tile; the paper's (G = 16) 27 / 47 against 24 / 60. The block walk holds n partials per
    query head for one call: n x the branch's output forward and n x dQ backward, in the
    inputs' dtype (at 64k: 3.2 GB each for qwen-1.5b's heads, 26 GB for the paper's dQ). Left
    None, a walk by block that would not fit (block_walk_fits) falls back to the query tile;
    set True, it is taken regardless.
    """

    block_m_cmp: int = 128
    block_m_slc: int = 0
    block_m_win: int = 128
    block_n: int = 0
    dkdv_query_steps: int = DKDV_QUERY_STEPS
    split_head_dim: bool = True
    slc_by_block: bool | None = None
    slc_bwd_by_block: bool | None = None

    def for_group(self, G: int) -> KernelTuning:
        """This tuning with block_m_slc and the selection walks resolved for group size G."""
        out = self
        if not out.block_m_slc:
            out = replace(out, block_m_slc=16 if G >= 6 else 64)
        if out.slc_by_block is None:
            out = replace(out, slc_by_block=G < 16)
        if out.slc_bwd_by_block is None:
            out = replace(out, slc_bwd_by_block=True)
        return out


DEFAULT_TUNING = KernelTuning()
# the block walk's partials may take the device up to this share of its memory, counting what
# PyTorch already holds there
BLOCK_WALK_MEMORY_SHARE = 0.9


def block_walk_fits(nbytes: int, device: torch.device) -> bool:
    """Whether nbytes of block-walk partials fit next to what PyTorch holds on the device. The
    caching allocator's count, not the driver's, so the check costs no driver call or sync;
    other processes' memory is not seen."""
    if device.type != "cuda":
        return True
    total = torch.cuda.get_device_properties(device).total_memory
    # the nested stats, read directly: memory_allocated flattens all ~160 of them first
    # (0.25 ms of host time a call on the H200, a seventh of an 8k forward's enqueue)
    held = torch.cuda.memory_stats_as_nested_dict(device)["allocated_bytes"]["all"]["current"]
    return held + nbytes <= BLOCK_WALK_MEMORY_SHARE * total


def _walk_by_block(asked: bool | None, resolved: bool, nbytes: int, device) -> bool:
    """The walk to take: the caller's True or False as given; the default (None) by block
    unless its partials would not fit."""
    if asked is not None or not resolved:
        return resolved
    return block_walk_fits(nbytes, device)


BWD_MAX_BLOCK_M = 64  # dQ/dK/dV tiles hold more state: wider tiles overflow shared memory


def _branch_args(tuning: KernelTuning, mode: int, backward: bool = False) -> dict:
    block_m = {MODE_CMP: tuning.block_m_cmp, MODE_SLC: tuning.block_m_slc}.get(
        mode, tuning.block_m_win
    )
    if backward and mode != MODE_SLC:  # SLC tiles must match the forward's block unions
        block_m = min(block_m, BWD_MAX_BLOCK_M)
    return dict(block_m=block_m, block_n=tuning.block_n, split_dk=tuning.split_head_dim)


class NSAFunction(torch.autograd.Function):
    """Packed NSA: q [N, H, Dk], k [N, H_kv, Dk], v [N, H_kv, Dv], kc/vc [N_cmp, H_kv, D]."""

    @staticmethod
    def forward(ctx, q, k, v, kc, vc, gates, cu_seqlens, cfg, scale, tuning):
        meta = prefill_meta(cu_seqlens, cfg, q.device)
        G = q.shape[1] // k.shape[1]
        asked, tuning = tuning, tuning.for_group(G)
        N, H, n = q.shape[0], q.shape[1], cfg.n_selected
        o_bytes = n * N * H * (v.shape[2] * q.element_size() + 4)  # o_part + lse_part
        fwd_walk = _walk_by_block(asked.slc_by_block, tuning.slc_by_block, o_bytes, q.device)
        tuning = replace(tuning, slc_by_block=fwd_walk)
        ctx.bwd_walk_asked = asked.slc_bwd_by_block
        cmp_args = _branch_args(tuning, MODE_CMP)
        gated = cfg.combine == "gated"  # union reads only the compressed log-sum-exp
        o_cmp, lse_cmp = attn_fwd(
            q, kc, vc, meta, cfg, MODE_CMP, scale, with_output=gated, **cmp_args
        )
        lse_cmp = lse_cmp[0]
        scores = slc_scores(q, kc, lse_cmp, meta, cfg, scale, split_dk=tuning.split_head_dim)
        idx = top_n(scores, cfg)
        o_slc, lse_slc, slc_lists = _selection_forward(q, k, v, idx, meta, cfg, scale, tuning)
        o_win, lse_win = attn_fwd(
            q, k, v, meta, cfg, MODE_WIN, scale, **_branch_args(tuning, MODE_WIN)
        )
        o_win, lse_win = o_win[0], lse_win[0]
        if cfg.combine == "union":
            o, lse = union_merge(o_slc, lse_slc, o_win, lse_win)
            ctx.save_for_backward(q, k, v, kc, vc, o, lse)
        else:
            o_cmp = o_cmp[0]
            o = gated_combine(o_cmp, o_slc, o_win, gates)
            ctx.save_for_backward(
                q, k, v, kc, vc, gates, o_cmp, lse_cmp, o_slc, lse_slc, o_win, lse_win
            )
        ctx.meta, ctx.cfg, ctx.scale, ctx.tuning = meta, cfg, scale, tuning
        ctx.slc_lists = slc_lists
        ctx.mark_non_differentiable(idx)
        return o, idx

    @staticmethod
    def backward(ctx, do, _didx):
        meta, cfg, scale, tuning = ctx.meta, ctx.cfg, ctx.scale, ctx.tuning
        q, k, v, kc, vc = ctx.saved_tensors[:5]
        do = do.contiguous()
        dq = torch.zeros(q.shape, device=q.device, dtype=torch.float32)
        dk = torch.zeros(k.shape, device=q.device, dtype=torch.float32)
        dv = torch.zeros(v.shape, device=q.device, dtype=torch.float32)
        dq_bytes = cfg.n_selected * q.numel() * q.element_size()  # dq_part
        by_block = _walk_by_block(ctx.bwd_walk_asked, tuning.slc_bwd_by_block, dq_bytes, q.device)
        slc_lists = ctx.slc_lists
        G = q.shape[1] // k.shape[1]
        work = None
        if by_block and isinstance(slc_lists, Selection):  # the forward walked by query tile
            slc_lists = position_lists(slc_lists.idx, meta, cfg, k.shape[1], positions_per_step(G))
        elif not by_block:  # the query tiles' unions and their dK/dV work lists
            if not isinstance(slc_lists, Selection):
                slc_lists = build_selection(slc_lists[0].idx, meta, cfg, G, tuning.block_m_slc)
            steps = slc_step_tiles(G, tuning.block_m_slc)
            work = slc_work(slc_lists, meta, cfg, k.shape[1], steps)

        def branch(mode, keys, values, d_o, lse, delta, dkeys, dvalues):
            if mode == MODE_SLC and by_block:  # one-position work lists, dQ + dK/dV at once
                slc_bwd_by_block(q, keys, values, d_o, lse, delta, dq, dkeys, dvalues,
                                 *slc_lists, meta, cfg, scale, tuning.split_head_dim)  # fmt: skip
                return
            args = _branch_args(tuning, mode, backward=True)
            s = slc_lists if mode == MODE_SLC else None
            attn_dq(q, keys, values, d_o, lse, delta, dq, meta, cfg, mode, scale, sel=s, **args)
            attn_dkdv(q, keys, values, d_o, lse, delta, dkeys, dvalues, meta, cfg, mode, scale,
                      sel=s, work=work, query_steps=tuning.dkdv_query_steps, **args)  # fmt: skip

        dkc = dvc = dgates = None
        if cfg.combine == "union":
            o, lse = ctx.saved_tensors[5:]
            delta = row_dot(do, o)
            branch(MODE_SLC, k, v, do, lse, delta, dk, dv)
            branch(MODE_WIN, k, v, do, lse, delta, dk, dv)
        else:
            gates, o_cmp, lse_cmp, o_slc, lse_slc, o_win, lse_win = ctx.saved_tensors[5:]
            (do_cmp, do_slc, do_win), dgates, delta = gated_combine_bwd(
                do, (o_cmp, o_slc, o_win), gates
            )
            dkc = torch.zeros(kc.shape, device=q.device, dtype=torch.float32)
            dvc = torch.zeros(vc.shape, device=q.device, dtype=torch.float32)
            branch(MODE_CMP, kc, vc, do_cmp, lse_cmp, delta[0], dkc, dvc)
            branch(MODE_SLC, k, v, do_slc, lse_slc, delta[1], dk, dv)
            branch(MODE_WIN, k, v, do_win, lse_win, delta[2], dk, dv)
            dkc, dvc, dgates = dkc.to(kc.dtype), dvc.to(vc.dtype), dgates.to(gates.dtype)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dkc, dvc, dgates,
                None, None, None, None)  # fmt: skip


def _selection_forward(q, k, v, idx, meta, cfg, scale, tuning):
    """The selection branch's o [N, H, Dv] and lse [N, H], and the lists it walked: the
    query tiles' Selection, or (by block) the one-position Selection and its work lists."""
    if tuning.slc_by_block:
        P = positions_per_step(q.shape[1] // k.shape[1])
        lists = position_lists(idx, meta, cfg, k.shape[1], P)
        o, lse = slc_fwd_by_block(q, k, v, *lists, meta, cfg, scale, tuning.split_head_dim)
        return o, lse, lists
    sel = build_selection(idx, meta, cfg, q.shape[1] // k.shape[1], tuning.block_m_slc)
    o, lse = attn_fwd(
        q, k, v, meta, cfg, MODE_SLC, scale, sel=sel, **_branch_args(tuning, MODE_SLC)
    )
    return o[0], lse[0], sel


def _validate(q, k, v, kc, vc, gates, cfg: NSAConfig, cu_seqlens) -> None:
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise KernelsUserError("q, k, v must be packed [N, H, D] (or batched [B, T, H, D])")
    N, H, Dk = q.shape
    if k.shape[0] != N or v.shape[0] != N or k.shape[2] != Dk or v.shape[1] != k.shape[1]:
        raise KernelsUserError(f"shapes disagree: q {q.shape}, k {k.shape}, v {v.shape}")
    H_kv = k.shape[1]
    if H % H_kv or not 1 <= H // H_kv <= 16:
        raise KernelsUserError(f"H / H_kv must be an integer 1..16, got {H} / {H_kv}")
    if not q.is_cuda and not _interpreting():
        raise KernelsUserError("the Triton kernels need a CUDA tensor (or TRITON_INTERPRET=1)")
    if (
        cu_seqlens[0] != 0
        or cu_seqlens[-1] != N
        or any(b < a for a, b in itertools.pairwise(cu_seqlens))
    ):
        raise KernelsUserError("cu_seqlens must rise from 0 to the number of tokens")
    n_cmp = cmp_cu_seqlens(cu_seqlens, cfg)[-1]
    if kc.shape != (n_cmp, H_kv, Dk) or vc.shape != (n_cmp, H_kv, v.shape[2]):
        raise KernelsUserError(f"kc/vc must be [{n_cmp}, {H_kv}, D], got {kc.shape}, {vc.shape}")
    if cfg.combine == "gated" and (gates is None or gates.shape != (N, H, 3)):
        raise KernelsUserError("gated combine needs gates [N, H, 3]")
    if len({t.dtype for t in (q, k, v, kc, vc)}) != 1:
        raise KernelsUserError("q, k, v, kc, vc must share one dtype")


def _interpreting() -> bool:
    """Whether Triton's interpreter runs the kernels (set before they were decorated)."""
    from triton.runtime.interpreter import InterpretedFunction

    from .attention import _attn_fwd_kernel

    return isinstance(_attn_fwd_kernel, InterpretedFunction)


def nsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kc: torch.Tensor,
    vc: torch.Tensor,
    cfg: NSAConfig,
    gates: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | list[int] | None = None,
    scale: float | None = None,
    tuning: KernelTuning = DEFAULT_TUNING,
    return_indices: bool = False,
):
    """Native Sparse Attention on the GPU (Triton), differentiable in q, k, v, kc, vc, gates.

    Batched: q [B, T, H, Dk], k [B, T, H_kv, Dk], v [B, T, H_kv, Dv], kc/vc [B, T_cmp, H_kv, D],
    gates [B, T, H, 3] -> o [B, T, H, Dv]. Packed: the same without B (or B = 1) plus
    cu_seqlens [B+1]; kc/vc packed per sequence (see varlen.cmp_cu_seqlens). Compressed tokens
    come from the caller (compress.compress_mean or the module's MLP). return_indices adds the
    selected blocks [.., H_kv, n].
    """
    batched = q.dim() == 4 and cu_seqlens is None
    lead = q.shape[:2] if batched else None
    if batched:
        B, T = q.shape[:2]
        cu = [b * T for b in range(B + 1)]
        q, k, v = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)
        kc, vc = kc.flatten(0, 1), vc.flatten(0, 1)
        gates = None if gates is None else gates.flatten(0, 1)
    else:
        if q.dim() == 4:
            q, k, v, kc, vc = (x.squeeze(0) for x in (q, k, v, kc, vc))
            gates = None if gates is None else gates.squeeze(0)
        cu = [0, q.shape[0]] if cu_seqlens is None else [int(x) for x in cu_seqlens]
    _validate(q, k, v, kc, vc, gates, cfg, cu)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k, v, kc, vc = (x.contiguous() for x in (q, k, v, kc, vc))
    gates = None if cfg.combine == "union" else gates.contiguous()
    o, idx = NSAFunction.apply(q, k, v, kc, vc, gates, cu, cfg, scale, tuning)
    if batched:
        o, idx = o.unflatten(0, lead), idx.unflatten(0, lead)
    return (o, idx) if return_indices else o
