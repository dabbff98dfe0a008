"""NSA kernels vs PyTorch SDPA flash (dense, causal) on one GPU: the whole module, in one run.

For each config and length: forward (compression + compressed attention + scores + top-n +
selected blocks + window + combine), backward (all of it), and decode at batch 1 and 32
(one new token against a full cache). Prints ms, speedup over SDPA and TFLOP/s over NSA's own
FLOP count (the keys each query actually reads), writes JSON.

    python bench/kernels.py --out bench/results/kernels-h200.json

`--parts split` (and `tune`, for configs whose Dk is not a power of two, e.g. the paper's 192)
times every stage with Dk padded (192 -> 256) and split in two tiles (128 + 64;
KernelTuning.split_head_dim), plus the whole module's forward and backward, side by side:

    python bench/kernels.py --configs paper --lengths 65536 --parts split --reps 3

Other parts: `launch` (per-stage launch sweep), `module_profile` / `decode_profile` (GPU time
per kernel; decode's also times a plain read of each big pass's bytes), `decode_splits` and
the decode knob sweeps of DECODE_SWEEPS (`decode_scores`, `decode_combine`, `decode_topn`,
`decode_fusion`, `decode_cmp`; `--sweep` picks knob groups),
`slc_walk` (the selection forward walked by query tile and by block, stage by stage and in
the whole module, side by side), `host` (the host's time to enqueue one forward, both walks),
`slc_real` (the selection kernels on a real model's selections, saved by
bench/selection_locality.py):

    python bench/kernels.py --configs qwen-0.5b --parts slc_real --selections FILE --reps 3

`--public DIR` also runs public NSA kernels side by side on the paper's head layout (their
source read from DIR, never committed; see bench_public): flash-linear-attention's
`parallel_nsa` (DIR/fla) and XunhaoLai's native-sparse-attention-triton (DIR/xunhao).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import itertools
import json
import math
import platform
import statistics
import sys
import time
import traceback
import types
from dataclasses import replace
from pathlib import Path

import torch
import triton
from gpu_timing import capture_graph

from nsa_assist.kernels.nsa import NSAConfig, nsa_attention, nsa_decode
from nsa_assist.kernels.nsa.attention import (
    MODE_CMP,
    MODE_SLC,
    MODE_WIN,
    Launch,
    attn_dkdv,
    attn_dq,
    attn_fwd,
    head_parts,
    slc_step_tiles,
)
from nsa_assist.kernels.nsa.combine import gated_combine
from nsa_assist.kernels.nsa.compress import compress_mean
from nsa_assist.kernels.nsa.op import KernelTuning, _branch_args
from nsa_assist.kernels.nsa.select import build_selection, slc_scores, slc_work, top_n
from nsa_assist.kernels.nsa.slc_by_block import (
    merge_slots,
    position_lists,
    positions_per_step,
    slc_bwd_by_block,
    slc_fwd_by_block,
)
from nsa_assist.kernels.nsa.varlen import cmp_cu_seqlens, prefill_meta
from nsa_assist.kernels.reference import nsa_reference

CONFIGS = {  # name: (H, H_kv, Dk, Dv)
    "paper": (64, 4, 192, 128),
    "qwen-1.5b": (12, 2, 128, 128),
    "qwen-0.5b": (14, 2, 64, 64),
}
# the public kernels' common ground: the paper's heads (G = 16, which fla needs) with one head
# size, since XunhaoLai's kernels take Dk == Dv (fla also runs the real paper config)
PUBLIC_CONFIGS = {"paper": (64, 4, 192, 128), "paper-d128": (64, 4, 128, 128)}
LENGTHS = (8192, 16384, 32768, 65536)
DECODE_BATCHES = (1, 32)
# decode is timed two ways: one step a graph replay, synchronised (its launch latency and
# every gap inside the step count), and STEPS_IN_GRAPH steps back to back in one graph, per
# step (as a model's layers run in its captured decode step); dense SDPA the same two ways
STEPS_IN_GRAPH = 8


def time_ms(fn, reps: int = 10, warmup: int = 3) -> float:
    """Median wall time on the GPU of fn() in ms (CUDA events)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def keys_read(T: int, cfg: NSAConfig) -> dict[str, float]:
    """Summed over queries: compressed tokens, selected keys and window keys each one reads."""
    t = torch.arange(T, dtype=torch.float64)
    n_cmp = torch.where(t >= cfg.cmp_block - 1, (t - cfg.cmp_block + 1) // cfg.cmp_stride + 1, 0)
    win = torch.clamp(t + 1, max=cfg.window)
    slc = torch.clamp(t + 1, max=cfg.n_selected * cfg.slc_block)
    if cfg.combine == "union":
        slc = torch.clamp(slc - win, min=0)
    return {"cmp": n_cmp.sum().item(), "slc": slc.sum().item(), "win": win.sum().item()}


def nsa_flops(T: int, H: int, Dk: int, Dv: int, cfg: NSAConfig) -> dict[str, float]:
    k = keys_read(T, cfg)
    # all three branches run forward (union needs the compressed lse), plus the scores pass
    fwd = 2 * (Dk + Dv) * (k["slc"] + k["win"] + k["cmp"]) + 2 * Dk * k["cmp"]
    bwd = 2.5 * 2 * (Dk + Dv) * (k["slc"] + k["win"] + (k["cmp"] if cfg.combine == "gated" else 0))
    return {"fwd": H * fwd, "bwd": H * bwd}


def dense_flops(T: int, H: int, Dk: int, Dv: int) -> dict[str, float]:
    f = H * 2 * (Dk + Dv) * T * (T + 1) / 2
    return {"fwd": f, "bwd": 2.5 * f}


def _inputs(T, H, H_kv, Dk, Dv, batch=1):
    mk = lambda *s: torch.randn(*s, device="cuda", dtype=torch.bfloat16)
    return mk(batch * T, H, Dk), mk(batch * T, H_kv, Dk), mk(batch * T, H_kv, Dv)


def bench_dense(T, H, Dk, Dv, reps):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    mk = lambda d: torch.randn(1, H, T, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    # flash needs one head size: Dv is padded to Dk (the paper config), noted in the output
    q, k, v = mk(Dk), mk(Dk), mk(max(Dk, Dv))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        fwd = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        o = fwd()
        do = torch.randn_like(o)
        t_fwd = time_ms(fwd, reps)
        t_bwd = time_ms(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True), reps)
    return t_fwd, t_bwd


def _module_calls(name, T, cfg, tuning):
    """(forward, backward) of the whole NSA module at length T: compression included; the
    backward re-runs on one saved graph."""
    H, H_kv, Dk, Dv = CONFIGS.get(name) or PUBLIC_CONFIGS[name]
    q, k, v = (x.requires_grad_() for x in _inputs(T, H, H_kv, Dk, Dv))
    gates = torch.rand(T, H, 3, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = [0, T]

    def fwd():
        kc, vc = compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)
        return nsa_attention(q, k, v, kc, vc, cfg, gates, cu, tuning=tuning)

    o = fwd()
    do = torch.randn_like(o)
    inputs = (q, k, v, gates) if cfg.combine == "gated" else (q, k, v)
    return fwd, lambda: torch.autograd.grad(o, inputs, do, retain_graph=True)


def time_nsa(name, T, cfg, tuning, reps) -> tuple[float, float]:
    """(fwd ms, bwd ms) of the whole NSA module (compression included) at length T."""
    fwd, bwd = _module_calls(name, T, cfg, tuning)
    return time_ms(fwd, reps), time_ms(bwd, reps)


def bench_prefill(name, T, cfg, tuning, reps):
    H, _H_kv, Dk, Dv = CONFIGS.get(name) or PUBLIC_CONFIGS[name]
    t_fwd, t_bwd = time_nsa(name, T, cfg, tuning, reps)
    d_fwd, d_bwd = bench_dense(T, H, Dk, Dv, reps)
    fl = nsa_flops(T, H, Dk, Dv, cfg)
    return {
        "config": name,
        "T": T,
        "combine": cfg.combine,
        "nsa_fwd_ms": t_fwd,
        "nsa_bwd_ms": t_bwd,
        "sdpa_fwd_ms": d_fwd,
        "sdpa_bwd_ms": d_bwd,
        "fwd_speedup": d_fwd / t_fwd,
        "bwd_speedup": d_bwd / t_bwd,
        "nsa_fwd_tflops": fl["fwd"] / t_fwd / 1e9,
        "nsa_bwd_tflops": fl["bwd"] / t_bwd / 1e9,
        "sdpa_fwd_tflops": dense_flops(T, H, Dk, Dv)["fwd"] / d_fwd / 1e9,
        "sdpa_bwd_tflops": dense_flops(T, H, Dk, Dv)["bwd"] / d_bwd / 1e9,
    }


def bench_decode(name, T, batch, cfg, reps, split_head_dim=True, splits=None):
    H, H_kv, Dk, Dv = CONFIGS[name]
    G = H // H_kv
    mk = lambda *s: torch.randn(*s, device="cuda", dtype=torch.bfloat16)
    k_cache, v_cache = mk(batch, T, H_kv, Dk), mk(batch, T, H_kv, Dv)
    n_c = cfg.num_compressed(T)
    kc = compress_mean(k_cache.flatten(0, 1), [i * T for i in range(batch + 1)], cfg)
    vc = compress_mean(v_cache.flatten(0, 1), [i * T for i in range(batch + 1)], cfg)
    kc, vc = kc.view(batch, n_c, H_kv, Dk), vc.view(batch, n_c, H_kv, Dv)
    q = mk(batch, H, Dk)
    gates = torch.rand(batch, H, 3, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((batch,), T, device="cuda", dtype=torch.int32)
    step = lambda: nsa_decode(
        q, k_cache, v_cache, kc, vc, lengths, cfg, gates, split_head_dim=split_head_dim,
        splits=splits,
    )  # fmt: skip
    t_nsa = time_ms(step, reps)
    per_step = lambda fn, steps: time_ms(capture_graph(fn, steps, warmup=3).replay, reps) / steps
    t_graph, t_steps = per_step(step, 1), per_step(step, STEPS_IN_GRAPH)
    # dense GQA decode: the G query heads of a KV head are G "positions" of one flash call
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qd = q.view(batch, H_kv, G, Dk)
    kd = k_cache.transpose(1, 2)
    vd = v_cache.transpose(1, 2)
    if Dv < Dk:
        vd = torch.nn.functional.pad(vd, (0, Dk - Dv))
    dense = lambda: torch.nn.functional.scaled_dot_product_attention(qd, kd, vd)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        t_dense = time_ms(dense, reps)
        t_dense_steps = per_step(dense, STEPS_IN_GRAPH)
    return {
        "config": name,
        "T": T,
        "batch": batch,
        "combine": cfg.combine,
        "split_head_dim": split_head_dim,
        "nsa_decode_ms": t_nsa,
        "nsa_decode_graph_ms": t_graph,
        "sdpa_decode_ms": t_dense,
        "decode_speedup": t_dense / t_nsa,
        "decode_graph_speedup": t_dense / t_graph,
        "steps_in_graph": STEPS_IN_GRAPH,
        "nsa_decode_steps_ms": t_steps,
        "sdpa_decode_steps_ms": t_dense_steps,
        "decode_steps_speedup": t_dense_steps / t_steps,
    }


def gpu_time_by_kernel(fn, reps: int) -> tuple[dict[str, float], list[list]]:
    """Each kernel's GPU time in us per call of fn over `reps` calls (torch.profiler),
    largest first; and [name, us] of each launch of one call in launch order (kernels of one
    name, like the three branch passes, apart), or [] if the calls' launches differ."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    per_kernel = {
        e.key[:80]: e.device_time_total / reps
        for e in prof.key_averages()
        if e.device_time_total > 0
    }
    by_size = dict(sorted(per_kernel.items(), key=lambda x: -x[1]))
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    kernels.sort(key=lambda e: e.time_range.start)
    per_call = len(kernels) // reps
    by_launch = []
    for i in range(per_call if per_call * reps == len(kernels) else 0):
        mine = kernels[i::per_call]
        if len({e.name for e in mine}) != 1:  # the calls' launches differ
            return by_size, []
        by_launch.append([mine[0].name[:80], sum(e.time_range.elapsed_us() for e in mine) / reps])
    return by_size, by_launch


def profile_decode(name, T, batch, cfg, reps) -> dict:
    """Where one decode step's GPU time goes: each kernel's total over `reps` eager steps,
    in us per step, largest first."""
    H, H_kv, Dk, Dv = CONFIGS[name]
    mk = lambda *s: torch.randn(*s, device="cuda", dtype=torch.bfloat16)
    k_cache, v_cache = mk(batch, T, H_kv, Dk), mk(batch, T, H_kv, Dv)
    n_c = cfg.num_compressed(T)
    kc, vc = mk(batch, n_c, H_kv, Dk), mk(batch, n_c, H_kv, Dv)
    q, gates = mk(batch, H, Dk), torch.rand(batch, H, 3, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((batch,), T, device="cuda", dtype=torch.int32)
    step = lambda: nsa_decode(q, k_cache, v_cache, kc, vc, lengths, cfg, gates)
    top, by_launch = gpu_time_by_kernel(step, reps)
    pass_bytes = decode_pass_bytes(name, T, batch, cfg)
    floor = {k: read_floor_us(b, reps) for k, b in pass_bytes.items()}
    return {"config": name, "T": T, "batch": batch, "combine": cfg.combine, "kernels": len(top),
            "gpu_us_per_step": sum(top.values()), "us_per_step": top,
            "us_per_launch": by_launch, "pass_mb": {k: b / 1e6 for k, b in pass_bytes.items()},
            "read_floor_us": floor}  # fmt: skip


def decode_pass_bytes(name, T, batch, cfg) -> dict[str, int]:
    """Bytes of K/V cache the two big passes of a decode step at length T must read: the
    compressed pass every compressed token's Kc (and Vc when gated), the selected + window
    pass n blocks and the window of K and V (where they overlap, twice: two branches)."""
    _, H_kv, Dk, Dv = CONFIGS[name]
    cmp_width = Dk + (Dv if cfg.combine == "gated" else 0)
    local_keys = min(T, cfg.n_selected * cfg.slc_block) + min(T, cfg.window)
    return {
        "compressed pass": batch * H_kv * cfg.num_compressed(T) * cmp_width * 2,
        "selected + window": batch * H_kv * local_keys * (Dk + Dv) * 2,
    }


def read_floor_us(n_bytes: int, reps: int) -> float:
    """GPU time in us of torch's sum over n_bytes of contiguous bf16: how long merely reading
    that many bytes takes on this GPU, a floor for a pass that must read them."""
    x = torch.randn(n_bytes // 2, device="cuda", dtype=torch.bfloat16)
    top, _ = gpu_time_by_kernel(lambda: x.sum(dtype=torch.float32), reps)
    return sum(top.values())


def profile_module(name, T, cfg, tuning, reps) -> dict:
    """Where the whole module's forward and backward GPU time goes, kernel by kernel (us per
    call): the stages of `breakdown` plus what lies between them (zeroing, casts, the
    combine, compression and its backward)."""
    fwd, bwd = _module_calls(name, T, cfg, tuning)
    out = {"config": name, "T": T, "combine": cfg.combine}
    for label, fn in (("fwd", fwd), ("bwd", bwd)):
        top, by_launch = gpu_time_by_kernel(fn, reps)
        out[f"{label}_launches_us"] = by_launch
        out[f"{label}_gpu_ms"] = sum(top.values()) / 1000
        out[f"{label}_us"] = top
    return out


def _setup(name, T, cfg):
    H, H_kv, Dk, Dv = CONFIGS[name]
    q, k, v = _inputs(T, H, H_kv, Dk, Dv)
    cu = [0, T]
    meta = prefill_meta(cu, cfg, q.device)
    kc, vc = compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)
    scale = 1 / math.sqrt(Dk)
    _, lse = attn_fwd(q, kc, vc, meta, cfg, MODE_CMP, scale)
    idx = top_n(slc_scores(q, kc, lse[0], meta, cfg, scale), cfg)
    return dict(q=q, k=k, v=v, kc=kc, vc=vc, meta=meta, scale=scale, lse=lse[0], idx=idx,
                G=H // H_kv, cu=cu)  # fmt: skip


def tune(name, T, cfg, reps) -> tuple[KernelTuning, dict]:
    """Rows per tile for each branch's forward, picked by time at length T."""
    st = _setup(name, T, cfg)
    q, k, v, kc, vc, meta, scale = (st[x] for x in ("q", "k", "v", "kc", "vc", "meta", "scale"))
    times: dict[str, float] = {}

    def attempt(label, fn):
        try:
            times[label] = time_ms(fn, reps)
        except triton.runtime.errors.OutOfResources:
            times[label] = float("inf")

    for bm in (64, 128):
        attempt(
            f"cmp_bm{bm}", lambda bm=bm: attn_fwd(q, kc, vc, meta, cfg, MODE_CMP, scale, block_m=bm)
        )
        attempt(
            f"win_bm{bm}", lambda bm=bm: attn_fwd(q, k, v, meta, cfg, MODE_WIN, scale, block_m=bm)
        )
    for bm in (16, 32, 64):

        def slc(bm=bm):
            sel = build_selection(st["idx"], meta, cfg, st["G"], bm)
            return attn_fwd(q, k, v, meta, cfg, MODE_SLC, scale, sel=sel, block_m=bm)

        attempt(f"slc_bm{bm}", slc)
    best = lambda br: int(
        min((t, x) for x, t in times.items() if x.startswith(br))[1].split("bm")[1]
    )
    return KernelTuning(
        block_m_cmp=best("cmp"), block_m_slc=best("slc"), block_m_win=best("win")
    ), times


def stage_fns(name, T, cfg, tuning, over: dict | None = None, st: dict | None = None):
    """Each forward and backward stage as a no-argument callable, plus the selection.

    over: per stage name, extra arguments of its attention call (block_n, launch), for sweeps;
    read at each call, so a sweep builds the stages once and changes `over` between timings.
    """
    st = st or _setup(name, T, cfg)
    over = {} if over is None else over
    x = lambda stage: over.get(stage, {})
    q, k, v, kc, vc, meta, scale = (st[x] for x in ("q", "k", "v", "kc", "vc", "meta", "scale"))
    cu, idx, lse_c = st["cu"], st["idx"], st["lse"]
    args = {m: _branch_args(tuning, m) for m in (MODE_CMP, MODE_SLC, MODE_WIN)}
    bwd = {m: _branch_args(tuning, m, backward=True) for m in (MODE_CMP, MODE_SLC, MODE_WIN)}
    sel = build_selection(idx, meta, cfg, st["G"], tuning.block_m_slc)
    o_cmp, _ = attn_fwd(q, kc, vc, meta, cfg, MODE_CMP, scale, **args[MODE_CMP])
    split_dk = tuning.split_head_dim
    scores = slc_scores(q, kc, lse_c, meta, cfg, scale, split_dk=split_dk)
    gates = torch.rand(T, q.shape[1], 3, device="cuda", dtype=torch.bfloat16)
    do = torch.randn_like(o_cmp[0])
    delta = torch.randn(lse_c.shape, device="cuda")
    dq = torch.zeros(q.shape, device="cuda")
    dk, dv = torch.zeros(k.shape, device="cuda"), torch.zeros(v.shape, device="cuda")
    dkc, dvc = torch.zeros(kc.shape, device="cuda"), torch.zeros(vc.shape, device="cuda")
    work = slc_work(sel, meta, cfg, k.shape[1], slc_step_tiles(st["G"], tuning.block_m_slc))
    keys = {MODE_CMP: (kc, vc, dkc, dvc), MODE_SLC: (k, v, dk, dv), MODE_WIN: (k, v, dk, dv)}
    s = {MODE_SLC: sel}
    stages = {
        "compress": lambda: (compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)),
        "cmp_attn": lambda: attn_fwd(
            q, kc, vc, meta, cfg, MODE_CMP, scale, **{**args[MODE_CMP], **x("cmp_attn")}
        ),
        "scores": lambda: slc_scores(q, kc, lse_c, meta, cfg, scale, split_dk=split_dk),
        "top_n": lambda: top_n(scores, cfg),
        "unions": lambda: build_selection(idx, meta, cfg, st["G"], tuning.block_m_slc),
        "slc_attn": lambda: attn_fwd(
            q, k, v, meta, cfg, MODE_SLC, scale, sel=sel, **{**args[MODE_SLC], **x("slc_attn")}
        ),
        "win_attn": lambda: attn_fwd(
            q, k, v, meta, cfg, MODE_WIN, scale, **{**args[MODE_WIN], **x("win_attn")}
        ),
        "combine": lambda: gated_combine(o_cmp[0], o_cmp[0], o_cmp[0], gates),
        "bwd_slc_work": lambda: slc_work(
            sel, meta, cfg, k.shape[1], slc_step_tiles(st["G"], tuning.block_m_slc)
        ),
    }
    # the selection branch walked by block (slc_by_block.py; the default for G < 16)
    P = positions_per_step(st["G"])
    pos, pos_work = position_lists(idx, meta, cfg, k.shape[1], P)
    stages["slc_block_lists"] = lambda: position_lists(idx, meta, cfg, k.shape[1], P)
    stages["slc_block_fwd"] = lambda: slc_fwd_by_block(
        q, k, v, pos, pos_work, meta, cfg, scale, split_dk
    )
    stages["bwd_slc_block"] = lambda: slc_bwd_by_block(
        q, k, v, do, lse_c, delta, dq, dk, dv, pos, pos_work, meta, cfg, scale, split_dk
    )
    for mode, label in ((MODE_CMP, "cmp"), (MODE_SLC, "slc"), (MODE_WIN, "win")):
        kk, vv, dkk, dvv = keys[mode]
        dq_name, dkdv_name = f"bwd_{label}_dq", f"bwd_{label}_dkdv"
        stages[dq_name] = lambda mode=mode, kk=kk, vv=vv, e=dq_name: attn_dq(
            q, kk, vv, do, lse_c, delta, dq, meta, cfg, mode, scale, sel=s.get(mode),
            **{**bwd[mode], **x(e)},
        )  # fmt: skip
        stages[dkdv_name] = lambda mode=mode, kk=kk, vv=vv, dkk=dkk, dvv=dvv, e=dkdv_name: (
            attn_dkdv(q, kk, vv, do, lse_c, delta, dkk, dvv, meta, cfg, mode, scale,
                      sel=s.get(mode), work=work, **{**bwd[mode], **x(e)})
        )  # fmt: skip
    return stages, sel


def stage_breakdown(name, T, cfg, tuning, reps):
    """Forward and backward stages timed one by one (ms), to see where the time goes."""
    stages, sel = stage_fns(name, T, cfg, tuning)
    out = {name_: time_ms(fn, reps) for name_, fn in stages.items()}
    out["mean_union_blocks"] = sel.ucount.float().mean().item()
    return {"config": name, "T": T, "combine": cfg.combine, "tuning": str(tuning), "stages_ms": out}


def bench_real_selections(name, path: Path, cfg, reps) -> dict:
    """The selection branch (forward, dQ, dK/dV) on a real model's selected blocks against
    random inputs' selections, saved by bench/selection_locality.py --save-idx, for several
    selection tile heights (block_m_slc). q, k, v are random in the config's shapes: the
    blocks each query reads, not the values, set the kernels' loads."""
    saved = torch.load(path)
    T = saved["tokens"]
    st = _setup(name, T, cfg)
    rows = []
    for layer, kinds in saved["idx"].items():
        for kind, idx in kinds.items():
            assert idx.shape == st["idx"].shape, f"{path} holds {tuple(idx.shape)} selections"
            st["idx"] = idx.to("cuda", torch.int32).contiguous()
            for block_m in (16, 32, 64):
                tuning = KernelTuning(block_m_slc=block_m)
                stages, sel = stage_fns(name, T, cfg, tuning, st=st)
                ms = {
                    x: time_ms(stages[x], reps) for x in ("slc_attn", "bwd_slc_dq", "bwd_slc_dkdv")
                }
                rows.append({"layer": layer, "selections": kind, "block_m_slc": block_m,
                             "mean_union_blocks": sel.ucount.float().mean().item(),
                             "rows_per_tile": sel.rows_per_tile, "ms": ms})  # fmt: skip
                print(name, "layer", layer, kind, "block_m", block_m,
                      {x: round(v, 3) for x, v in ms.items()}, flush=True)  # fmt: skip
    return {"config": name, "T": T, "model": saved["model"], "rows": rows}


def host_enqueue(name, T, cfg, tuning, reps) -> dict:
    """Host time to enqueue one module forward (ms, median), each walk of the selection
    branch twice in alternating order: at short lengths the host, not the GPU, sets the
    forward's wall time."""
    out = {"config": name, "T": T, "combine": cfg.combine}
    for walk in ("query", "block", "query", "block"):
        fwd, _ = _module_calls(name, T, cfg, replace(tuning, slc_by_block=walk == "block"))
        times = []
        for _ in range(reps + 3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fwd()
            times.append((time.perf_counter() - start) * 1e3)
        out.setdefault(f"by_{walk}_ms", []).append(statistics.median(times[3:]))
    print(name, T, "host enqueue ms", out["by_query_ms"], out["by_block_ms"], flush=True)
    return out


def _time_merge(n: int, o: torch.Tensor, lse: torch.Tensor, reps: int) -> float:
    """merge_slots alone on random partials of n slots shaped like o / lse."""
    o_part = torch.randn(n, *o.shape, device="cuda", dtype=o.dtype)
    lse_part = torch.randn(n, *lse.shape, device="cuda")
    return time_ms(lambda: merge_slots(o_part, lse_part), reps)


def compare_slc_prefetch(name, T, cfg, tuning, reps, rounds: int = 2) -> dict:
    """The by-block selection kernels at each prefetch level (slc_by_block.PREFETCH_LEVEL:
    None the rule's, 0 each step loads its own entries, 1 the next step's entries too),
    forward and backward, alternated over `rounds` in one process (ms,
    medians of at least 10); same_output: every level's forward equals the rule's bit for bit."""
    by_block = importlib.import_module("nsa_assist.kernels.nsa.slc_by_block")
    st = _setup(name, T, cfg)
    q, k, v, meta, scale, idx = (st[x] for x in ("q", "k", "v", "meta", "scale", "idx"))
    split = tuning.split_head_dim
    pos, work = position_lists(idx, meta, cfg, k.shape[1], positions_per_step(st["G"]))
    fwd = lambda: slc_fwd_by_block(q, k, v, pos, work, meta, cfg, scale, split)
    o, lse = fwd()
    do, delta = torch.randn_like(o), torch.randn(lse.shape, device="cuda")
    grads = [torch.zeros(x.shape, device="cuda") for x in (q, k, v)]
    bwd = lambda: slc_bwd_by_block(
        q, k, v, do, lse, delta, *grads, pos, work, meta, cfg, scale, split
    )
    times: dict[str, list[float]] = {}
    same = True
    try:
        for _ in range(rounds):
            for level in (None, 0, 1):
                by_block.PREFETCH_LEVEL = level
                same = same and torch.equal(fwd()[0], o)
                for kind, fn in (("fwd", fwd), ("bwd", bwd)):
                    what = f"{name} {kind} prefetch {level}"
                    times.setdefault(f"{kind}_level_{level}", []).append(
                        _time_or_inf(fn, max(reps, 10), what)
                    )
    finally:
        by_block.PREFETCH_LEVEL = None
    print(name, T, "prefetch", {x: [round(t, 3) for t in y] for x, y in times.items()},
          "same output", same, flush=True)  # fmt: skip
    return {"config": name, "T": T, "ms": times, "same_output": same}


def compare_slc_walk(name, T, cfg, tuning, reps, rows_per_step=(64,)) -> dict:
    """The selection branch walked by query tile (block unions + attn_fwd; backward work
    lists, dQ, dK/dV) and by block (slc_by_block.py: work lists + kernel + merge; one backward
    kernel + slot sum), each stage timed, the forward outputs compared, then the whole module
    both ways in alternating order (ms)."""
    st = _setup(name, T, cfg)
    q, k, v, meta, scale, idx, G = (st[x] for x in ("q", "k", "v", "meta", "scale", "idx", "G"))
    split = tuning.split_head_dim
    args = _branch_args(tuning, MODE_SLC)
    by_query = lambda: attn_fwd(
        q, k, v, meta, cfg, MODE_SLC, scale,
        sel=build_selection(idx, meta, cfg, G, tuning.block_m_slc), **args,
    )  # fmt: skip
    sel = build_selection(idx, meta, cfg, G, tuning.block_m_slc)
    out = {"config": name, "T": T, "combine": cfg.combine, "ms": {}}
    ms = out["ms"]
    ms["by_query_unions"] = time_ms(
        lambda: build_selection(idx, meta, cfg, G, tuning.block_m_slc), reps
    )
    ms["by_query_attn"] = time_ms(
        lambda: attn_fwd(q, k, v, meta, cfg, MODE_SLC, scale, sel=sel, **args), reps
    )
    ms["by_query_total"] = time_ms(by_query, reps)
    o_q, lse_q = (x[0] for x in by_query())
    do, delta = torch.randn_like(o_q), torch.randn(lse_q.shape, device="cuda")
    dq = torch.zeros(q.shape, device="cuda")
    dk, dv = torch.zeros(k.shape, device="cuda"), torch.zeros(v.shape, device="cuda")
    bwd = _branch_args(tuning, MODE_SLC, backward=True)
    tiles = slc_step_tiles(G, tuning.block_m_slc)
    work_q = slc_work(sel, meta, cfg, k.shape[1], tiles)
    ms["by_query_bwd_work"] = time_ms(lambda: slc_work(sel, meta, cfg, k.shape[1], tiles), reps)
    ms["by_query_dq"] = time_ms(
        lambda: attn_dq(q, k, v, do, lse_q, delta, dq, meta, cfg, MODE_SLC, scale, sel=sel, **bwd),
        reps,
    )  # fmt: skip
    ms["by_query_dkdv"] = time_ms(
        lambda: attn_dkdv(q, k, v, do, lse_q, delta, dk, dv, meta, cfg, MODE_SLC, scale,
                          sel=sel, work=work_q, **bwd),
        reps,
    )  # fmt: skip
    for rows in rows_per_step:
        P = positions_per_step(G, rows)
        pos, work = position_lists(idx, meta, cfg, k.shape[1], P)
        run = lambda pos=pos, work=work, rows=rows: slc_fwd_by_block(
            q, k, v, pos, work, meta, cfg, scale, split, rows=rows
        )
        full = lambda P=P, rows=rows: slc_fwd_by_block(
            q, k, v, *position_lists(idx, meta, cfg, k.shape[1], P), meta, cfg, scale, split,
            rows=rows,
        )  # fmt: skip
        ms[f"by_block{rows}_work"] = time_ms(
            lambda P=P: position_lists(idx, meta, cfg, k.shape[1], P), reps
        )
        ms[f"by_block{rows}_kernel_merge"] = _time_or_inf(run, reps, f"by_block{rows}")
        ms[f"by_block{rows}_total"] = _time_or_inf(full, reps, f"by_block{rows}")
        o_b, lse_b = run()
        ms[f"by_block{rows}_bwd"] = _time_or_inf(
            lambda pos=pos, work=work, rows=rows: slc_bwd_by_block(
                q, k, v, do, lse_q, delta, dq, dk, dv, pos, work, meta, cfg, scale, split,
                rows=rows,
            ),
            reps, f"by_block{rows}_bwd",
        )  # fmt: skip
        out[f"by_block{rows}_vs_by_query"] = {
            "o_rel": ((o_b.float() - o_q.float()).norm() / o_q.float().norm()).item(),
            "lse_max_abs": (lse_b - lse_q).nan_to_num(0.0, 0.0, 0.0).abs().max().item(),
            "work_items": int(work[0].numel()),
        }
    ms["by_block_merge_alone"] = _time_merge(cfg.n_selected, o_q, lse_q, reps)
    pos, work = position_lists(idx, meta, cfg, k.shape[1], positions_per_step(G))
    sweep = itertools.product((4, 8), (1, 2, 3)) if tuning.slc_by_block else ()
    for warps, stages in sweep:
        launch = Launch(warps, stages)
        out.setdefault("launch_sweep", []).append({
            "warps": warps, "stages": stages,
            "fwd": _time_or_inf(lambda launch=launch: slc_fwd_by_block(
                q, k, v, pos, work, meta, cfg, scale, split, launch=launch), reps, str(launch)),
            "bwd": _time_or_inf(lambda launch=launch: slc_bwd_by_block(
                q, k, v, do, lse_q, delta, dq, dk, dv, pos, work, meta, cfg, scale, split,
                launch=launch), reps, str(launch)),
        })  # fmt: skip
    for walk in ("query", "block", "query", "block"):
        both = dict(slc_by_block=walk == "block", slc_bwd_by_block=walk == "block")
        fb = time_nsa(name, T, cfg, replace(tuning, **both), reps)
        out.setdefault(f"module_by_{walk}", []).append(fb)
    print(name, T, {x: round(y, 3) for x, y in ms.items()}, out["module_by_query"],
          out["module_by_block"], flush=True)  # fmt: skip
    return out


# the attention stages whose launch options and key-step width `--parts launch` sweeps,
# the largest first (so a run cut short still has them)
LAUNCH_STAGES = (
    *("bwd_cmp_dkdv", "bwd_slc_dq", "bwd_cmp_dq", "bwd_slc_dkdv", "bwd_win_dkdv", "bwd_win_dq"),
    *("slc_attn", "cmp_attn", "win_attn"),
)


def sweep_launch(name, T, cfg, tuning, reps, out: dict, save, only=None) -> None:
    """Each attention stage under num_warps x num_stages x keys per step (BN), timed alone,
    into out["stages"] (saved after each stage).

    The default launch of each stage is timed in the same run, so `best` vs `default` is a
    like-for-like gain. A launch that does not fit (shared memory, registers) counts as inf.
    """
    st = _setup(name, T, cfg)
    out.update({"config": name, "T": T, "tuning": str(tuning), "stages": {}})
    over: dict = {}
    fns, _ = stage_fns(name, T, cfg, tuning, over, st=st)
    for stage in [x for x in LAUNCH_STAGES if not only or x in only]:
        over.clear()
        times = {"default": time_ms(fns[stage], reps)}
        block_ns = (32, 64) if "slc" in stage or "bwd" in stage else (64, 128)
        for warps in (4, 8):
            for stages_ in (1, 2, 3):
                for bn in block_ns:
                    label = f"w{warps}_s{stages_}_bn{bn}"
                    over[stage] = dict(block_n=bn, launch=Launch(warps, stages_))
                    times[label] = _time_or_inf(fns[stage], reps, f"{stage} {label}")
        over.clear()
        times["default_last"] = time_ms(fns[stage], reps)
        out["stages"][stage] = _sweep_summary(f"{name} {stage}", times)
        save()
    over.clear()
    if not only or "scores" in only:
        sweep_scores(T, cfg, tuning, reps, st, out, save)


def sweep_scores(T, cfg, tuning, reps, st: dict, out: dict, save) -> None:
    """The scores pass under num_warps x num_stages x rows per tile x selection blocks per
    step, into out["stages"]["scores"]."""
    q, kc, lse_c, meta, scale = (st[x] for x in ("q", "kc", "lse", "meta", "scale"))
    run = lambda **kw: slc_scores(
        q, kc, lse_c, meta, cfg, scale, split_dk=tuning.split_head_dim, **kw
    )
    times = {"default": time_ms(run, reps)}
    for warps in (4, 8):
        for stages_ in (1, 2, 3):
            for rows in (64, 128):
                for bj in (16, 32):  # blocks a step: tl.dot needs K >= 16
                    label = f"w{warps}_s{stages_}_rows{rows}_bj{bj}"
                    kw = dict(score_rows=rows, block_j=bj, launch=Launch(warps, stages_))
                    times[label] = _time_or_inf(lambda kw=kw: run(**kw), reps, f"scores {label}")
    times["default_last"] = time_ms(run, reps)
    out["stages"]["scores"] = _sweep_summary(f"{out['config']} scores", times)
    save()


def sweep_decode_knobs(name, T, cfg, reps, module, knobs: dict[str, tuple]) -> list[dict]:
    """A decode step (CUDA graph) at each batch of DECODE_BATCHES under every setting of the
    module constants `knobs` (read by their kernels at each call), the defaults first; the
    defaults are restored after."""
    default = tuple(getattr(module, k) for k in knobs)
    rows = []
    for setting in [default, *itertools.product(*knobs.values())]:
        for k, value in zip(knobs, setting, strict=True):
            setattr(module, k, value)
        for batch in DECODE_BATCHES:
            row = bench_decode(name, T, batch, cfg, reps * 4)
            row.update({k.lower(): v for k, v in zip(knobs, setting, strict=True)})
            row["default"] = setting == default
            rows.append(row)
            print(name, "decode b", batch, dict(zip(knobs, setting, strict=True)),
                  round(row["nsa_decode_graph_ms"], 4), flush=True)  # fmt: skip
    for k, value in zip(knobs, default, strict=True):
        setattr(module, k, value)
    return rows


# decode sweeps (CUDA-graph steps under module constants): part -> (module of kernels/nsa,
# {group: knobs}); each group is swept over its own product, `--sweep` picks groups
DECODE_SWEEPS = {
    "decode_scores": ("decode_scores", {  # blocks a program x warps
        "tiles": {"DECODE_SCORE_BLOCKS": (16, 32, 64, 128), "DECODE_SCORE_WARPS": (2, 4, 8)},
    }),
    "decode_combine": ("combine", {  # rows or Dv columns a program x warps
        "rows": {"DECODE_COMBINE_ROWS": (1, 2, 4, 8), "DECODE_COMBINE_WARPS": (1, 2, 4)},
        "cols": {"DECODE_COMBINE_COLS": (16, 32, 64, 128), "DECODE_COMBINE_WARPS": (1, 4)},
    }),
    "decode_topn": ("topn", {  # bitonic sort or max rounds x warps
        "sort": {"REGISTER_SORT": (True, False), "REGISTER_SORT_WARPS": (1, 2, 4, 8)},
    }),
    "decode_fusion": ("decode", {  # selected + window in one launch, and its pipeline
        "fused": {"DECODE_FUSED_LOCAL": (True, False)},
        "stages": {"DECODE_LOCAL_WARPS": (4, 8), "DECODE_LOCAL_STAGES": (1, 2, 3)},
    }),
    "decode_cmp": ("decode", {  # the compressed pass: keys a step x warps x stages
        "launch": {"DECODE_CMP_KEYS": (64, 128), "DECODE_CMP_WARPS": (4, 8),
                   "DECODE_CMP_STAGES": (2, 3, 4)},
    }),
}  # fmt: skip


def _time_or_inf(fn, reps: int, what: str) -> float:
    """fn's time, or inf for a launch that does not fit (shared memory, registers) or fails."""
    try:
        return time_ms(fn, reps)
    except Exception as e:  # out of resources, or a compile failure
        print(what, type(e).__name__, flush=True)
        return float("inf")


def _sweep_summary(what: str, times: dict[str, float]) -> dict:
    """The sweep's times, its best setting and the gain over the default, printed. A launch
    sweep times its default first and again last (`default_last`) and counts the faster: in
    v13's, a setting identical to the default timed up to 17% apart from it. A winner still
    needs an alternating rerun before it is taken (kernels/NOTES.md v13 item 5)."""
    default = min(times["default"], times.get("default_last", math.inf))
    best = min(times, key=times.get)
    print(what, "default", round(default, 3), "best", best, round(times[best], 3), flush=True)
    torch.cuda.empty_cache()
    return {"times_ms": times, "best": best, "gain": default / times[best]}


# the stages that tile over Dk (the others do not depend on split_head_dim)
DK_STAGES = (
    *("cmp_attn", "scores", "slc_attn", "win_attn"),
    *(f"bwd_{b}_{p}" for b in ("cmp", "slc", "win") for p in ("dq", "dkdv")),
)


def compare_split(name, T, cfg, tuning, reps) -> dict:
    """Dk padded vs split in two power-of-two tiles: each Dk stage, the whole module, and a
    decode step (CUDA graph) at each batch of DECODE_BATCHES."""
    out = {"config": name, "T": T, "combine": cfg.combine, "tuning": str(tuning)}
    Dk = CONFIGS[name][2]
    out["dk_parts"] = {"padded": head_parts(Dk, False), "split": head_parts(Dk, True)}
    for label, flag in (("padded", False), ("split", True)):
        tuned = replace(tuning, split_head_dim=flag)
        stages = stage_breakdown(name, T, cfg, tuned, reps)["stages_ms"]
        out[label] = {x: stages[x] for x in DK_STAGES}
        out[label]["dk_stages_total"] = sum(stages[x] for x in DK_STAGES)
        out[label]["module_fwd_ms"], out[label]["module_bwd_ms"] = time_nsa(
            name, T, cfg, tuned, reps
        )
        for batch in DECODE_BATCHES:
            row = bench_decode(name, T, batch, cfg, reps * 4, split_head_dim=flag)
            out[label][f"decode_b{batch}_graph_ms"] = row["nsa_decode_graph_ms"]
        torch.cuda.empty_cache()
    out["padded_over_split"] = {x: out["padded"][x] / out["split"][x] for x in out["split"]}
    total = lambda x: out[x]["module_fwd_ms"] + out[x]["module_bwd_ms"]
    out["split_wins"] = total("split") < total("padded")
    return out


def _load_public(vendor: Path) -> dict:
    """The public kernels' entry points, imported from their source under `vendor`.

    fla: only `fla.ops.nsa` is needed; the top-level `fla` and `fla.ops` packages import every
    model and op, so they are stood in for by bare packages over the same folders.
    """
    found: dict = {"errors": {}}
    fla_root = vendor / "fla" / "fla"
    try:
        for name, sub in (("fla", fla_root), ("fla.ops", fla_root / "ops")):
            if name not in sys.modules:
                mod = types.ModuleType(name)
                mod.__path__ = [str(sub)]
                mod.__version__ = "vendored"
                sys.modules[name] = mod
        found["fla"] = importlib.import_module("fla.ops.nsa.parallel").parallel_nsa
    except Exception:  # report whatever kept it from loading
        found["errors"]["fla"] = traceback.format_exc(limit=3)
    try:
        sys.path.insert(0, str(vendor / "xunhao"))
        ops = importlib.import_module("native_sparse_attention.ops")
        found["xunhao"] = ops
    except Exception:
        found["errors"]["xunhao"] = traceback.format_exc(limit=3)
    src = vendor / "SOURCES.txt"
    found["sources"] = src.read_text().strip().splitlines() if src.exists() else []
    return found


# fla compresses by mean pooling over non-overlapping 64-token blocks (l = d = l' = 64);
# XunhaoLai's avgpool compression follows the paper (l = 32, d = 16, l' = 64)
FLA_CFG = NSAConfig(cmp_block=64, cmp_stride=64, slc_block=64, n_selected=16)
XUNHAO_CFG = NSAConfig()


def _fla_run(pub, q, k, v, gates):
    """fla's parallel_nsa: compression + top-n + selection, gated; no window (see bench_public)."""
    g = gates.unsqueeze(0)
    o = pub["fla"](
        q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), g[..., 0], g[..., 1], None,
        block_counts=FLA_CFG.n_selected, block_size=FLA_CFG.slc_block, window_size=0,
    )  # fmt: skip
    return o.squeeze(0)


def _xunhao_run(pub, q, k, v, gates):
    """XunhaoLai's pipeline as its NativeSparseAttention module runs it, without the window."""
    ops, cfg, T = pub["xunhao"], XUNHAO_CFG, q.shape[0]
    cu = torch.tensor([0, T], device=q.device, dtype=torch.int32)
    kc, cu_c = ops.avgpool_compress(k, None, cu, cfg.cmp_block, cfg.cmp_stride)
    vc, _ = ops.avgpool_compress(v, None, cu, cfg.cmp_block, cfg.cmp_stride)
    o_cmp, idx = ops.compressed_attention(
        q, kc, vc, cfg.cmp_block, cfg.cmp_stride, cfg.slc_block, cfg.n_selected, cu, cu_c,
        T, int(cu_c[-1]), None, 1, 2,
    )  # fmt: skip
    o_slc = ops.topk_sparse_attention(q, k, v, idx, cfg.slc_block, cu)
    return gates[..., 0:1] * o_cmp + gates[..., 1:2] * o_slc


def _rel(a: torch.Tensor, b: torch.Tensor, rows: slice) -> float:
    a, b = a[rows].double(), b[rows].double()
    return ((a - b).norm() / b.norm()).item()


def check_public(pub, T: int = 4096) -> list[dict]:
    """Each public kernel's output vs our fp32 reference at its own conventions (window gate 0,
    since neither runs a window without flash-attn), next to our Triton op's error at the same
    conventions as the bf16 yardstick. Rows before the first full compression block are left
    out (XunhaoLai's kernel does not write its compressed output there)."""
    H, H_kv, Dk, Dv = PUBLIC_CONFIGS["paper-d128"]
    q, k, v = _inputs(T, H, H_kv, Dk, Dv)
    gates = torch.rand(T, H, 3, device="cuda", dtype=torch.bfloat16)
    gates[..., 2] = 0
    cu = [0, T]
    out = []
    for label, cfg, run in (("fla", FLA_CFG, _fla_run), ("xunhao", XUNHAO_CFG, _xunhao_run)):
        if label not in pub:
            continue
        kc, vc = compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)
        up = lambda x: x.float()
        ref = nsa_reference(
            up(q), up(k), up(v), up(kc), up(vc), cfg, up(gates), torch.tensor(cu),
            torch.tensor(cmp_cu_seqlens(cu, cfg)), query_chunk=512,
        )  # fmt: skip
        rows = slice(cfg.cmp_block, T)
        row = {"kernel": label, "T": T, "config": "paper-d128", "l": cfg.cmp_block,
               "d": cfg.cmp_stride, "l_slc": cfg.slc_block, "n": cfg.n_selected}  # fmt: skip
        try:
            ours = nsa_attention(q, k, v, kc, vc, cfg, gates, cu)
            row["ours_rel_err"] = _rel(ours, ref, rows)
        except Exception:
            row["ours_error"] = traceback.format_exc(limit=3)
        try:
            with torch.no_grad():
                theirs = run(pub, q, k, v, gates)
            row["rel_err"] = _rel(theirs, ref, rows)
            row["nan"] = bool(torch.isnan(theirs[rows]).any())
        except Exception:
            row["error"] = traceback.format_exc(limit=3)
        out.append(row)
        print(_fmt(row), flush=True)
    return out


def _time_pair(run, inputs, reps):
    """(fwd ms, bwd ms) of run() -> o and its gradient wrt inputs."""
    o = run()
    do = torch.randn_like(o)
    t_fwd = time_ms(run, reps)
    t_bwd = time_ms(lambda: torch.autograd.grad(o, inputs, do, retain_graph=True), reps)
    return t_fwd, t_bwd


def bench_public(pub, name: str, T: int, tuning: KernelTuning, reps: int) -> dict:
    """Ours (whole module), SDPA flash and the public kernels on one shape, one run.

    Neither public kernel has a sliding window of its own (both call flash-attn's, which is
    not installed there), so each public time is their compression + top-n + selection; our
    window branch's fwd (and dQ + dK/dV) time is measured alongside and added for `+win`.
    """
    H, H_kv, Dk, Dv = PUBLIC_CONFIGS[name]
    cfg = NSAConfig()
    row = bench_prefill(name, T, cfg, tuning, reps)
    row["kind"] = "public"
    q, k, v = (x.requires_grad_() for x in _inputs(T, H, H_kv, Dk, Dv))
    gates = torch.rand(T, H, 3, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    meta, scale = prefill_meta([0, T], cfg, q.device), 1 / math.sqrt(Dk)
    win_args = _branch_args(tuning, MODE_WIN)
    win_bwd = _branch_args(tuning, MODE_WIN, backward=True)
    _, lse = attn_fwd(q, k, v, meta, cfg, MODE_WIN, scale, **win_args)
    do = torch.randn(T, H, Dv, device="cuda", dtype=torch.bfloat16)
    dq, dk, dv = (torch.zeros(x.shape, device="cuda") for x in (q, k, v))
    row["win_fwd_ms"] = time_ms(
        lambda: attn_fwd(q, k, v, meta, cfg, MODE_WIN, scale, **win_args), reps
    )
    row["win_bwd_ms"] = time_ms(
        lambda: (
            attn_dq(q, k, v, do, lse[0], lse[0], dq, meta, cfg, MODE_WIN, scale, **win_bwd),
            attn_dkdv(q, k, v, do, lse[0], lse[0], dk, dv, meta, cfg, MODE_WIN, scale, **win_bwd),
        ),
        reps,
    )
    for label, run, ok in (
        ("fla", _fla_run, "fla" in pub),
        ("xunhao", _xunhao_run, "xunhao" in pub and Dk == Dv),
    ):
        if not ok:
            row[f"{label}_skipped"] = pub["errors"].get(label, "needs Dk == Dv")[-300:]
            continue
        try:
            t_f, t_b = _time_pair(lambda run=run: run(pub, q, k, v, gates), (q, k, v, gates), reps)
        except Exception:  # record it, keep benchmarking the rest
            row[f"{label}_error"] = traceback.format_exc(limit=4)[-1500:]
            print(label, "failed:", row[f"{label}_error"], flush=True)
            continue
        row[f"{label}_fwd_ms"], row[f"{label}_bwd_ms"] = t_f, t_b
        f_win, b_win = t_f + row["win_fwd_ms"], t_b + row["win_bwd_ms"]
        row[f"{label}_win_fwd_ms"], row[f"{label}_win_bwd_ms"] = f_win, b_win
        row[f"ours_vs_{label}_fwd"] = f_win / row["nsa_fwd_ms"]
        row[f"ours_vs_{label}_bwd"] = b_win / row["nsa_bwd_ms"]
        torch.cuda.empty_cache()
    return row


def _fmt(row: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    p.add_argument("--combine", default="gated", choices=["gated", "union"])
    extra = "also: split, launch, module_profile, decode_profile, decode_splits, decode_scores, "
    extra += ", ".join(DECODE_SWEEPS) + ", "
    extra += "slc_walk, slc_prefetch, host, slc_real (with --selections)"
    p.add_argument("--parts", default="tune,prefill,decode,breakdown", help=extra)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--padded-head-dim", action="store_true", help="pad Dk, do not split it")
    p.add_argument("--sweep", help="launch part: only these stages (e.g. scores,slc_attn); "
                   "decode sweeps: only these knob groups (DECODE_SWEEPS, e.g. cols)")  # fmt: skip
    p.add_argument("--split-settings", help="decode_splits part: a Python list of settings, "
                   "e.g. '[None, (None, 16, None)]' (None: the rule's)")  # fmt: skip
    p.add_argument("--out", default="bench/results/kernels-h200.json")
    p.add_argument("--selections", help="slc_real part: a file of bench/selection_locality.py")
    p.add_argument("--public", metavar="DIR", help="also run the public NSA kernels under DIR")
    p.add_argument("--public-lengths", default="16384,65536")
    p.add_argument("--public-configs", default=",".join(PUBLIC_CONFIGS))
    a = p.parse_args(argv)
    cfg = NSAConfig(combine=a.combine)
    parts = a.parts.split(",")
    lengths = [int(x) for x in a.lengths.split(",")]
    result = {
        "command": "python " + " ".join(sys.argv),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "nsa": {
            "l": cfg.cmp_block,
            "d": cfg.cmp_stride,
            "l_slc": cfg.slc_block,
            "n": cfg.n_selected,
            "w": cfg.window,
            "combine": cfg.combine,
        },
        "note": "SDPA flash baseline pads Dv to Dk where they differ (paper config)",
        "prefill": [],
        "decode": [],
        "breakdown": [],
        "public": [],
        "public_check": [],
    }
    result["tuning"] = []
    result["split"] = []
    result["launch"] = []

    def save():  # after every config, so a run cut short still leaves its rows
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)

    for name in [x for x in a.configs.split(",") if x]:
        tuning = KernelTuning(split_head_dim=not a.padded_head_dim)
        tuning = tuning.for_group(CONFIGS[name][0] // CONFIGS[name][1])
        if "tune" in parts:
            tuning, times = tune(name, max(lengths), cfg, a.reps)
            result["tuning"].append({"config": name, "T": max(lengths), "chosen": str(tuning),
                                     "fwd_ms": times})  # fmt: skip
            print(name, "tuning", tuning, {k: round(v, 3) for k, v in times.items()}, flush=True)
        if ("tune" in parts or "split" in parts) and head_parts(CONFIGS[name][2], True)[1]:
            row = compare_split(name, max(lengths), cfg, tuning, a.reps)
            result["split"].append(row)
            print(name, "split vs padded Dk", _fmt(row["padded_over_split"]), flush=True)
            if "tune" in parts:  # keep whichever ran the whole module faster
                tuning = replace(tuning, split_head_dim=row["split_wins"])
        for T in lengths:
            if "prefill" in parts:
                row = bench_prefill(name, T, cfg, tuning, a.reps)
                result["prefill"].append(row)
                print(_fmt(row), flush=True)
            if "decode" in parts:
                for batch in DECODE_BATCHES:
                    row = bench_decode(
                        name, T, batch, cfg, a.reps * 4, split_head_dim=tuning.split_head_dim
                    )
                    result["decode"].append(row)
                    print(_fmt(row), flush=True)
        if "launch" in parts:
            result["launch"].append({})
            only = a.sweep.split(",") if a.sweep else None
            sweep_launch(name, max(lengths), cfg, tuning, a.reps, result["launch"][-1], save, only)
        if "decode_splits" in parts:  # key splits: of every branch, then of each alone
            settings = [None, 1, 2, 3, 4, 8, 16, 32, 64]
            settings += [(c, 1, 1) for c in (2, 3, 4)] + [(1, s, 1) for s in (2, 3)]
            settings += [(1, 1, 2), (1, 2, 2)]
            if a.split_settings:
                settings = ast.literal_eval(a.split_settings)
            for batch in DECODE_BATCHES:
                for splits in settings:
                    row = bench_decode(name, max(lengths), batch, cfg, a.reps * 4, splits=splits)
                    row["splits"] = splits
                    result.setdefault("decode_splits", []).append(row)
                    print(name, "decode b", batch, "splits", splits,
                          round(row["nsa_decode_graph_ms"], 4), flush=True)  # fmt: skip
        if "module_profile" in parts:
            row = profile_module(name, max(lengths), cfg, tuning, a.reps)
            result.setdefault("module_profile", []).append(row)
            print(name, "module GPU ms: fwd", round(row["fwd_gpu_ms"], 2), "bwd",
                  round(row["bwd_gpu_ms"], 2), flush=True)  # fmt: skip
        if "host" in parts:
            for T in lengths:
                result.setdefault("host", []).append(host_enqueue(name, T, cfg, tuning, a.reps))
        if "slc_walk" in parts:
            for T in lengths:
                row = compare_slc_walk(name, T, cfg, tuning, a.reps, (32, 64, 128))
                result.setdefault("slc_walk", []).append(row)
                save()
        if "slc_prefetch" in parts:
            row = compare_slc_prefetch(name, max(lengths), cfg, tuning, a.reps)
            result.setdefault("slc_prefetch", []).append(row)
            save()
        if "slc_real" in parts:
            row = bench_real_selections(name, Path(a.selections), cfg, a.reps)
            result.setdefault("slc_real", []).append(row)
        for part, (module_name, groups) in DECODE_SWEEPS.items():
            if part not in parts:
                continue
            module = importlib.import_module(f"nsa_assist.kernels.nsa.{module_name}")
            for label, knobs in groups.items():
                if not a.sweep or label in a.sweep.split(","):
                    rows = sweep_decode_knobs(name, max(lengths), cfg, a.reps, module, knobs)
                    result.setdefault(part, []).extend(rows)
        if "decode_profile" in parts:
            for batch in DECODE_BATCHES:
                row = profile_decode(name, max(lengths), batch, cfg, a.reps * 4)
                result.setdefault("decode_profile", []).append(row)
                print(name, "decode b", batch, round(row["gpu_us_per_step"], 1), "us GPU,",
                      row["kernels"], "kernels", flush=True)  # fmt: skip
        if "breakdown" in parts:
            row = stage_breakdown(name, max(lengths), cfg, tuning, a.reps)
            result["breakdown"].append(row)
            print(name, max(lengths), {k: round(v, 3) for k, v in row["stages_ms"].items()})
        torch.cuda.empty_cache()
        save()
    if a.public:
        run_public(a, cfg, result, save)
    save()


def run_public(a, cfg: NSAConfig, result: dict, save) -> None:
    pub = _load_public(Path(a.public))
    result["public_sources"] = pub["sources"]
    result["public_load_errors"] = pub["errors"]
    print("public kernels:", [x for x in ("fla", "xunhao") if x in pub], pub["errors"], flush=True)
    result["public_check"] = check_public(pub)
    for name in [x for x in a.public_configs.split(",") if x]:
        tuning = KernelTuning().for_group(PUBLIC_CONFIGS[name][0] // PUBLIC_CONFIGS[name][1])
        for T in (int(x) for x in a.public_lengths.split(",")):
            row = bench_public(pub, name, T, tuning, a.reps)
            result["public"].append(row)
            save()
            print(_fmt({k: v for k, v in row.items() if not k.endswith(("_error", "_skipped"))}),
                  flush=True)  # fmt: skip
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1:])
