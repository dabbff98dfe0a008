"""Decode: one new token per sequence against its KV cache and compressed-KV cache.

Caches are padded per sequence: k_cache [B, S, H_kv, Dk], v_cache [B, S, H_kv, Dv],
kc_cache [B, S_cmp, H_kv, Dk], vc_cache [B, S_cmp, H_kv, Dv]; lengths[b] counts the tokens of
sequence b including the new one. Each branch is split over its keys (flash-decoding) so a
batch of one still fills the GPU; partial results are merged by their log-sum-exp.

A step is six launches, none waiting on the host (so it can be captured in a CUDA graph):
offsets (varlen.decode_meta), the compressed pass (which keeps its logits), block scores
from those logits (decode_scores), top-n with its counts, the selected and window passes in
one launch (their splits side by side in one grid), and one kernel that merges every
branch's splits and combines them (combine.decode_combine).
Tried, not kept (H200, 64k, same run): the window pass on a side stream, overlapping the
compressed pass (batch 32: paper 0.1775 -> 0.1736 ms, qwen-1.5b 0.0871 -> 0.0925); scores and
top-n in one program per (sequence, KV head) (7.5-19 us against 2-12 for the scores plus
4.3-4.7 for top-n: one program reads all G heads' logits of a row alone); the window pass on
the compressed pass's launch (batch 32: as slow as its own launch, 5-10% behind this one);
the offsets computed by the compressed pass instead of a launch of their own (qwen 1-5%
faster, paper 3-10% slower); every launch with programmatic dependent launch (batch 32: paper
0.1615 -> 0.168 ms, qwen-1.5b 0.072 either way).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ..errors import KernelsUserError
from .attention import MODE_CMP, MODE_SLC, MODE_WIN, Launch, attn_fwd
from .combine import decode_combine
from .config import NSAConfig
from .decode_scores import decode_scores
from .select import selection_per_query
from .topn import top_n_blocks
from .varlen import decode_meta

KEYS_PER_STEP = 64
DECODE_BLOCK_M = 16  # one query per sequence: the smallest tile (16 rows) wastes the least
# key splits: about one program per SM over the batch's (sequence, KV head) tiles, rounded
# down, and two where a K + V row is at most NARROW_KV values (more such programs fit an
# SM). bench/kernels.py --parts decode_splits (H200, 64k, batch 32):
# paper (Dk + Dv = 320, 128 tiles) 1 split 0.179 ms, 2 0.187, 3 (v7's two-wave rule) 0.211;
# qwen-1.5b (256, 64 tiles) 4 splits 0.0848, 2 0.0852; qwen-0.5b (128, 64 tiles) 4 splits
# 0.0626, 2 0.0744; at batch 1 every config is within 6% of its best of 1..64 splits
NARROW_KV = 256
DEFAULT_SMS = 132  # an H200's, where no GPU is visible (the interpreter)
# the selected and window passes in one launch (attn_fwd's win_splits)
DECODE_FUSED_LOCAL = True
# the compressed pass's keys per step, warps and pipeline stages (0: attention._plan's)
DECODE_CMP_KEYS = 0
DECODE_CMP_WARPS = 0
DECODE_CMP_STAGES = 0
# the fused selected + window launch's warps and stages (0: attention._plan's). Two stages
# (bench/kernels.py --parts decode_fusion, H200, 64k, batch 32, one call): qwen-1.5b 0.0846
# -> 0.0747 ms (32 KB of K + V a stage: three stages held two programs an SM), qwen-0.5b
# 0.0529 -> 0.0543, paper 0.1635 either way (its plan already took two)
DECODE_LOCAL_WARPS = 0
DECODE_LOCAL_STAGES = 2


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return DEFAULT_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count


def _splits(batch_heads: int, max_keys: int, kv_width: int, device: torch.device) -> int:
    steps = max(1, math.ceil(max_keys / KEYS_PER_STEP))
    per_sm = 2 if kv_width <= NARROW_KV else 1
    return max(1, min(steps, per_sm * _sm_count(device) // batch_heads))


def completed_blocks(lengths: list[int], cfg: NSAConfig) -> list[tuple[int, int]]:
    """(sequence, compressed index) of the blocks the newest token of each sequence completes."""
    out = []
    for b, n in enumerate(lengths):
        if n >= cfg.cmp_block and (n - cfg.cmp_block) % cfg.cmp_stride == 0:
            out.append((b, (n - cfg.cmp_block) // cfg.cmp_stride))
    return out


def update_compressed_cache(
    cache: torch.Tensor,
    cmp_cache: torch.Tensor,
    lengths: list[int],
    cfg: NSAConfig,
    phi: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Write φ of every block the newest tokens complete into cmp_cache, in place.

    cache [B, S, H_kv, D], cmp_cache [B, S_cmp, H_kv, D]; phi maps blocks [n, H_kv, l, D] to
    [n, H_kv, D] (default: the mean).
    """
    done = completed_blocks(lengths, cfg)
    if not done:
        return
    seqs = torch.tensor([b for b, _ in done], device=cache.device)
    idx = torch.tensor([c for _, c in done], device=cache.device)
    starts = idx * cfg.cmp_stride
    pos = starts[:, None] + torch.arange(cfg.cmp_block, device=cache.device)[None, :]
    blocks = cache[seqs[:, None], pos].transpose(1, 2)  # [n, H_kv, l, D]
    cmp_cache[seqs, idx] = (blocks.mean(2) if phi is None else phi(blocks)).to(cmp_cache.dtype)


def _validate(q, k_cache, v_cache, kc_cache, vc_cache, lengths, cfg, gates) -> None:
    B, H, Dk = q.shape
    if k_cache.dim() != 4 or k_cache.shape[0] != B or k_cache.shape[3] != Dk:
        raise KernelsUserError(f"k_cache must be [B, S, H_kv, {Dk}], got {tuple(k_cache.shape)}")
    if v_cache.shape[:3] != k_cache.shape[:3] or kc_cache.shape[0] != B:
        raise KernelsUserError("v_cache/kc_cache disagree with k_cache")
    if vc_cache.shape[:3] != kc_cache.shape[:3] or kc_cache.shape[2:] != k_cache.shape[2:]:
        raise KernelsUserError("vc_cache/kc_cache disagree with the caches")
    if H % k_cache.shape[2] or H // k_cache.shape[2] > 16:
        raise KernelsUserError("H / H_kv must be an integer 1..16")
    if kc_cache.shape[1] < cfg.num_compressed(k_cache.shape[1]):
        raise KernelsUserError("kc_cache must hold every block of a full k_cache")
    if cfg.combine == "gated" and (gates is None or gates.shape != (B, H, 3)):
        raise KernelsUserError("gated combine needs gates [B, H, 3]")
    if isinstance(lengths, torch.Tensor):
        if lengths.shape != (B,) or lengths.dtype != torch.int32 or lengths.device != q.device:
            raise KernelsUserError("lengths must be int32 [B] on q's device (or a list)")
    elif len(lengths) != B or min(lengths) < 1 or max(lengths) > k_cache.shape[1]:
        raise KernelsUserError(f"lengths must be B={B} values in 1..{k_cache.shape[1]}")


def nsa_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    kc_cache: torch.Tensor,
    vc_cache: torch.Tensor,
    lengths: torch.Tensor | list[int],
    cfg: NSAConfig,
    gates: torch.Tensor | None = None,
    scale: float | None = None,
    splits: int | tuple[int | None, int | None, int | None] | None = None,
    split_head_dim: bool = True,
) -> torch.Tensor:
    """NSA output of the newest token: q [B, H, Dk] -> o [B, H, Dv].

    The caches must already hold the new token's k/v and every completed compressed block
    (update_compressed_cache). lengths as an int32 device tensor keeps the call free of
    host-device copies and syncs, so a decode step can be captured in a CUDA graph (its values
    are then not checked). splits: key splits of every branch, or of each (compressed,
    selected, window); None: enough to fill the GPU. split_head_dim: as
    KernelTuning.split_head_dim (two power-of-two Dk tiles, not one padded).
    """
    _validate(q, k_cache, v_cache, kc_cache, vc_cache, lengths, cfg, gates)
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.tensor(lengths, dtype=torch.int32, device=q.device)
    B, S, H_kv, _ = k_cache.shape
    S_cmp = kc_cache.shape[1]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    meta = decode_meta(lengths, S, S_cmp, cfg)
    q = q.contiguous()
    k, v = k_cache.reshape(B * S, H_kv, -1), v_cache.reshape(B * S, H_kv, -1)
    kc, vc = kc_cache.reshape(B * S_cmp, H_kv, -1), vc_cache.reshape(B * S_cmp, H_kv, -1)
    run = dict(block_m=DECODE_BLOCK_M, out_dtype=torch.float32, split_dk=split_head_dim)
    cmp_launch = Launch(DECODE_CMP_WARPS, DECODE_CMP_STAGES)
    per_branch = splits if isinstance(splits, tuple) else (splits,) * 3
    kv_width = k_cache.shape[-1] + v_cache.shape[-1]
    n_split = lambda branch, keys: per_branch[branch] or _splits(B * H_kv, keys, kv_width, q.device)
    gated = cfg.combine == "gated"  # union reads only the compressed log-sum-exp
    # the compressed pass keeps its logits (B x H x S_cmp floats), so the block scores read
    # them instead of all of Kc again (H200, paper config, batch 32 at 64k: 201 MB of Kc)
    logits = torch.empty(B, q.shape[1], S_cmp, device=q.device, dtype=torch.float32)
    cmp = attn_fwd(
        q, kc, vc, meta, cfg, MODE_CMP, scale, splits=n_split(0, cfg.num_compressed(S)),
        with_output=gated, logits=logits, block_n=DECODE_CMP_KEYS, launch=cmp_launch, **run,
    )  # fmt: skip
    scores = decode_scores(logits, cmp[1], meta, cfg, H_kv)  # merges the splits' lse itself
    ucount = torch.empty(B, H_kv, device=q.device, dtype=torch.int32)
    idx = top_n_blocks(scores, cfg.n_selected, counts=ucount)
    sel = selection_per_query(idx, ucount, meta, q.shape[1] // H_kv, DECODE_BLOCK_M)
    slc_splits = min(n_split(1, cfg.n_selected * cfg.slc_block), cfg.n_selected)
    win_splits = n_split(2, cfg.window)
    if DECODE_FUSED_LOCAL:  # one launch, the window's splits after the selection's
        o, lse = attn_fwd(
            q, k, v, meta, cfg, MODE_SLC, scale, sel=sel, splits=slc_splits,
            win_splits=win_splits, launch=Launch(DECODE_LOCAL_WARPS, DECODE_LOCAL_STAGES), **run,
        )  # fmt: skip
        slc, win = (o[:slc_splits], lse[:slc_splits]), (o[slc_splits:], lse[slc_splits:])
    else:
        slc = attn_fwd(q, k, v, meta, cfg, MODE_SLC, scale, sel=sel, splits=slc_splits, **run)
        win = attn_fwd(q, k, v, meta, cfg, MODE_WIN, scale, splits=win_splits, **run)
    return decode_combine(cmp, slc, win, gates, union=not gated, out_dtype=q.dtype)
