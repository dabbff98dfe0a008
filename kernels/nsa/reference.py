"""Plain float32 PyTorch Native Sparse Attention (arXiv 2502.11089 §3, Eq. 5-10): the ground truth.

Everything here is written for reading, not speed: dense masks per branch, one sequence at a
time, queries in chunks so long sequences fit in memory. Shapes: q [T, H, Dk], k [T, H_kv, Dk],
v [T, H_kv, Dv], compressed kc [T_cmp, H_kv, Dk], vc [T_cmp, H_kv, Dv], gates [T, H, 3];
G = H / H_kv query heads share one KV head.

Decisions where the paper leaves room (each is tested in tests/test_nsa_reference.py):

1. Compressed token i summarises keys [i*d, i*d + l) (Eq. 7's k_{id+1:id+l}, 0-based); only
   complete blocks exist, so T_cmp = floor((T - l) / d) + 1, or 0 when T < l.
2. Causality of the compressed branch: token i is visible to query t only when its block ends
   at or before t (i*d + l - 1 <= t). A query that sees none (t < l - 1) gets a zero output from
   this branch (log-sum-exp -inf) and zero importance scores.
3. Eq. 9 (compressed -> selection blocks): each compressed token adds its probability once per
   stride-unit it shares with selection block j, i.e. p_slc[j] = sum_{m<l'/d} sum_{n<l/d}
   p_cmp[(l'/d) j + m - n]. With l=32, d=16, l'=64 the weights over compressed tokens
   4j-1 .. 4j+3 are 1, 2, 2, 2, 1: the token overlap. (The printed index in Eq. 9 fixes the
   weights but not the alignment; we align it with the tokens actually shared.)
4. Eq. 10: the per-head probabilities (each head's own softmax) are summed over the G query
   heads of a group, so all heads of a group read the same blocks.
5. Top-n: block 0 and the two local blocks (the one holding t and the one before) are always
   selected and count toward n; a block that starts after t is never selected; when fewer than
   n blocks exist all are taken (unused slots are -1). Ties among equal scores: the lower block
   wins (as the Triton top-n, topn.py; torch.topk leaves the order of ties unspecified).
6. Inside a selected block only keys s <= t are read (the local block is causal).
7. Sliding window: keys s with t - w < s <= t.
8. `gated`: o = g_cmp * o_cmp + g_slc * o_slc + g_win * o_win with gates [T, H, 3] in that
   order (the module makes them with a sigmoid).
9. `union`: the selection branch reads only its keys outside the window (s <= t - w); both
   branches return their log-sum-exp and are merged by it, which is exactly one softmax over
   selected-blocks ∪ window. The compressed branch then only supplies scores, not output.
10. One softmax scale for all branches, 1/sqrt(Dk) unless given.
"""

from __future__ import annotations

import math

import torch

from .config import NSAConfig

QUERY_CHUNK = 1024


def compress_mean_reference(x: torch.Tensor, cfg: NSAConfig) -> torch.Tensor:
    """Mean of each compressed block: x [T, H_kv, D] -> [T_cmp, H_kv, D]."""
    n = cfg.num_compressed(x.shape[0])
    rows = [x[i * cfg.cmp_stride : i * cfg.cmp_stride + cfg.cmp_block].mean(0) for i in range(n)]
    if not rows:
        return x.new_zeros(0, *x.shape[1:])
    return torch.stack(rows)


def overlap_matrix(num_cmp: int, num_slc: int, cfg: NSAConfig, device=None) -> torch.Tensor:
    """Eq. 9 as a matrix W [T_cmp, N_slc]: W[i, j] = stride-units shared by token i and block j."""
    units_cmp = cfg.cmp_block // cfg.cmp_stride
    units_slc = cfg.slc_block // cfg.cmp_stride
    i = torch.arange(num_cmp, device=device)[:, None]
    j = torch.arange(num_slc, device=device)[None, :]
    lo = torch.maximum(i, j * units_slc)
    hi = torch.minimum(i + units_cmp, (j + 1) * units_slc)
    return (hi - lo).clamp(min=0).float()


def _masked_attention(
    s: torch.Tensor, mask: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over allowed keys. s [H, t, S], mask [H, t, S], v [H, S, Dv] -> o [t, H, Dv], lse.

    Rows with no allowed key give o = 0 and lse = -inf.
    """
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # [H, t]
    p = torch.exp(s - lse.nan_to_num(neginf=0.0)[..., None]).masked_fill(~mask, 0.0)
    return torch.einsum("hts,hsd->thd", p, v), lse.transpose(0, 1)


def select_blocks_reference(scores: torch.Tensor, t: torch.Tensor, cfg: NSAConfig) -> torch.Tensor:
    """Top-n blocks per query. scores [H_kv, t, N_slc], t [t] positions -> idx [t, H_kv, n].

    Forced blocks (first, local two) rank first, future blocks never; empty slots are -1.
    """
    num_slc = scores.shape[-1]
    j = torch.arange(num_slc, device=scores.device)[None, :]
    cur = (t // cfg.slc_block)[:, None]
    forced = (j == 0) | (j == cur) | (j == cur - 1)
    ranked = scores.masked_fill(forced, float("inf")).masked_fill(j > cur, float("-inf"))
    k = min(cfg.n_selected, num_slc)
    top, idx = ranked.sort(dim=-1, descending=True, stable=True)  # ties: the lower block first
    top, idx = top[..., :k], idx[..., :k]
    idx = idx.masked_fill(top == float("-inf"), -1)
    if k < cfg.n_selected:
        pad = idx.new_full((*idx.shape[:-1], cfg.n_selected - k), -1)
        idx = torch.cat([idx, pad], dim=-1)
    return idx.permute(1, 0, 2).contiguous()


def _one_sequence(q, k, v, kc, vc, gates, cfg: NSAConfig, scale: float, chunk: int):
    T, H, _ = q.shape
    T_cmp, H_kv = kc.shape[0], k.shape[1]
    G = H // H_kv
    num_slc = cfg.num_slc_blocks(T)
    kh = k.repeat_interleave(G, 1).transpose(0, 1)  # [H, T, Dk]
    vh = v.repeat_interleave(G, 1).transpose(0, 1)
    kch = kc.repeat_interleave(G, 1).transpose(0, 1)  # [H, T_cmp, Dk]
    vch = vc.repeat_interleave(G, 1).transpose(0, 1)
    W = overlap_matrix(T_cmp, num_slc, cfg, q.device)
    key_pos = torch.arange(T, device=q.device)
    cmp_end = torch.arange(T_cmp, device=q.device) * cfg.cmp_stride + cfg.cmp_block - 1
    outs, sels = [], []
    for a in range(0, T, chunk):
        t = torch.arange(a, min(a + chunk, T), device=q.device)
        qh = q[a : a + len(t)].transpose(0, 1)  # [H, t, Dk]
        # compressed branch (Eq. 7-8)
        cmp_mask = (cmp_end[None, :] <= t[:, None]).expand(H, -1, -1)
        o_cmp, lse_cmp = _masked_attention(qh @ kch.transpose(1, 2) * scale, cmp_mask, vch)
        # importance scores (Eq. 8-10) and top-n
        p_cmp = torch.exp(qh @ kch.transpose(1, 2) * scale - lse_cmp.T[..., None])
        p_cmp = p_cmp.masked_fill(~cmp_mask, 0.0)
        p_slc = (p_cmp @ W).view(H_kv, G, len(t), num_slc).sum(1)  # [H_kv, t, N_slc]
        idx = select_blocks_reference(p_slc, t, cfg)  # [t, H_kv, n]
        chosen = torch.zeros(len(t), H_kv, num_slc + 1, dtype=torch.bool, device=q.device)
        chosen.scatter_(2, idx.clamp(min=-1) % (num_slc + 1), True)  # -1 lands in the spare slot
        slc_keys = chosen[..., key_pos // cfg.slc_block]  # [t, H_kv, T]
        slc_mask = (slc_keys & (key_pos[None, None, :] <= t[:, None, None])).permute(1, 0, 2)
        slc_mask = slc_mask.repeat_interleave(G, 0)  # [H, t, T]
        win_mask = (key_pos[None, :] <= t[:, None]) & (key_pos[None, :] > t[:, None] - cfg.window)
        win_mask = win_mask.expand(H, -1, -1)
        s = qh @ kh.transpose(1, 2) * scale
        o_win, lse_win = _masked_attention(s, win_mask, vh)
        if cfg.combine == "union":
            o_slc, lse_slc = _masked_attention(s, slc_mask & ~win_mask, vh)
            lse = torch.logaddexp(lse_slc, lse_win)
            o = (
                torch.exp(lse_slc - lse)[..., None] * o_slc
                + torch.exp(lse_win - lse)[..., None] * o_win
            )
        else:
            o_slc, _ = _masked_attention(s, slc_mask, vh)
            g = gates[a : a + len(t)]
            o = g[..., 0:1] * o_cmp + g[..., 1:2] * o_slc + g[..., 2:3] * o_win
        outs.append(o)
        sels.append(idx)
    return torch.cat(outs), torch.cat(sels)


def nsa_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kc: torch.Tensor,
    vc: torch.Tensor,
    cfg: NSAConfig,
    gates: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    cu_seqlens_cmp: torch.Tensor | None = None,
    scale: float | None = None,
    query_chunk: int = QUERY_CHUNK,
    return_indices: bool = False,
):
    """NSA output for packed sequences, in float32.

    q [N, H, Dk], k [N, H_kv, Dk], v [N, H_kv, Dv] with N = total tokens, cu_seqlens [B+1]
    (None: one sequence); kc [N_cmp, H_kv, Dk], vc [N_cmp, H_kv, Dv] packed by cu_seqlens_cmp;
    gates [N, H, 3] (gated mode). Returns o [N, H, Dv] (and the selected blocks [N, H_kv, n]).
    """
    N = q.shape[0]
    if cu_seqlens is None:
        cu_seqlens = torch.tensor([0, N])
    if cu_seqlens_cmp is None:
        cu_seqlens_cmp = torch.tensor([0, kc.shape[0]])
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    outs, sels = [], []
    bounds = zip(cu_seqlens.tolist()[:-1], cu_seqlens.tolist()[1:], strict=True)
    cbounds = zip(cu_seqlens_cmp.tolist()[:-1], cu_seqlens_cmp.tolist()[1:], strict=True)
    for (a, b), (ca, cb) in zip(bounds, cbounds, strict=True):
        g = None if gates is None else gates[a:b].float()
        o, idx = _one_sequence(
            q[a:b].float(), k[a:b].float(), v[a:b].float(),
            kc[ca:cb].float(), vc[ca:cb].float(), g, cfg, scale, query_chunk,
        )  # fmt: skip
        outs.append(o)
        sels.append(idx)
    o, idx = torch.cat(outs), torch.cat(sels)
    return (o, idx) if return_indices else o
