"""NSA kernels vs PyTorch SDPA flash (dense, causal) on one GPU: the whole module, in one run.

For each config and length: forward (compression + compressed attention + scores + top-n +
selected blocks + window + combine), backward (all of it), and decode at batch 1 and 32
(one new token against a full cache). Prints ms, speedup over SDPA and TFLOP/s over NSA's own
FLOP count (the keys each query actually reads), writes JSON.

    python bench/kernels.py --out bench/results/kernels-h200.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys

import torch
import triton

from nsa_assist.kernels.nsa import NSAConfig, nsa_attention, nsa_decode
from nsa_assist.kernels.nsa.attention import (
    MODE_CMP,
    MODE_SLC,
    MODE_WIN,
    attn_dkdv,
    attn_dq,
    attn_fwd,
)
from nsa_assist.kernels.nsa.combine import gated_combine
from nsa_assist.kernels.nsa.compress import compress_mean
from nsa_assist.kernels.nsa.op import KernelTuning, _branch_args
from nsa_assist.kernels.nsa.select import build_selection, slc_scores, slc_work, top_n
from nsa_assist.kernels.nsa.varlen import prefill_meta

CONFIGS = {  # name: (H, H_kv, Dk, Dv)
    "paper": (64, 4, 192, 128),
    "qwen-1.5b": (12, 2, 128, 128),
    "qwen-0.5b": (14, 2, 64, 64),
}
LENGTHS = (8192, 16384, 32768, 65536)
DECODE_BATCHES = (1, 32)


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


def bench_prefill(name, T, cfg, tuning, reps):
    H, H_kv, Dk, Dv = CONFIGS[name]
    q, k, v = (x.requires_grad_() for x in _inputs(T, H, H_kv, Dk, Dv))
    gates = torch.rand(T, H, 3, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = [0, T]

    def fwd():
        kc, vc = compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)
        return nsa_attention(q, k, v, kc, vc, cfg, gates, cu, tuning=tuning)

    o = fwd()
    do = torch.randn_like(o)
    inputs = (q, k, v, gates) if cfg.combine == "gated" else (q, k, v)
    t_fwd = time_ms(fwd, reps)
    t_bwd = time_ms(lambda: torch.autograd.grad(o, inputs, do, retain_graph=True), reps)
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


def bench_decode(name, T, batch, cfg, reps):
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
    step = lambda: nsa_decode(q, k_cache, v_cache, kc, vc, lengths, cfg, gates)
    t_nsa = time_ms(step, reps)
    stream = torch.cuda.Stream()  # warm up off the capture stream, then capture one step
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    t_graph = time_ms(graph.replay, reps)
    # dense GQA decode: the G query heads of a KV head are G "positions" of one flash call
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qd = q.view(batch, H_kv, G, Dk)
    kd = k_cache.transpose(1, 2)
    vd = v_cache.transpose(1, 2)
    if Dv < Dk:
        vd = torch.nn.functional.pad(vd, (0, Dk - Dv))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        t_dense = time_ms(
            lambda: torch.nn.functional.scaled_dot_product_attention(qd, kd, vd), reps
        )
    return {
        "config": name,
        "T": T,
        "batch": batch,
        "combine": cfg.combine,
        "nsa_decode_ms": t_nsa,
        "nsa_decode_graph_ms": t_graph,
        "sdpa_decode_ms": t_dense,
        "decode_speedup": t_dense / t_nsa,
        "decode_graph_speedup": t_dense / t_graph,
    }


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


def stage_breakdown(name, T, cfg, tuning, reps):
    """Forward and backward stages timed one by one (ms), to see where the time goes."""
    st = _setup(name, T, cfg)
    q, k, v, kc, vc, meta, scale = (st[x] for x in ("q", "k", "v", "kc", "vc", "meta", "scale"))
    cu, idx, lse_c = st["cu"], st["idx"], st["lse"]
    args = {m: _branch_args(tuning, m) for m in (MODE_CMP, MODE_SLC, MODE_WIN)}
    bwd = {m: _branch_args(tuning, m, backward=True) for m in (MODE_CMP, MODE_SLC, MODE_WIN)}
    sel = build_selection(idx, meta, cfg, st["G"], tuning.block_m_slc)
    o_cmp, _ = attn_fwd(q, kc, vc, meta, cfg, MODE_CMP, scale, **args[MODE_CMP])
    scores = slc_scores(q, kc, lse_c, meta, cfg, scale)
    gates = torch.rand(T, q.shape[1], 3, device="cuda", dtype=torch.bfloat16)
    do = torch.randn_like(o_cmp[0])
    delta = torch.randn(lse_c.shape, device="cuda")
    dq = torch.zeros(q.shape, device="cuda")
    dk, dv = torch.zeros(k.shape, device="cuda"), torch.zeros(v.shape, device="cuda")
    dkc, dvc = torch.zeros(kc.shape, device="cuda"), torch.zeros(vc.shape, device="cuda")
    work = slc_work(sel, k.shape[1])
    keys = {MODE_CMP: (kc, vc, dkc, dvc), MODE_SLC: (k, v, dk, dv), MODE_WIN: (k, v, dk, dv)}
    s = {MODE_SLC: sel}
    stages = {
        "compress": lambda: (compress_mean(k, cu, cfg), compress_mean(v, cu, cfg)),
        "cmp_attn": lambda: attn_fwd(q, kc, vc, meta, cfg, MODE_CMP, scale, **args[MODE_CMP]),
        "scores": lambda: slc_scores(q, kc, lse_c, meta, cfg, scale),
        "top_n": lambda: top_n(scores, cfg),
        "unions": lambda: build_selection(idx, meta, cfg, st["G"], tuning.block_m_slc),
        "slc_attn": lambda: attn_fwd(
            q, k, v, meta, cfg, MODE_SLC, scale, sel=sel, **args[MODE_SLC]
        ),
        "win_attn": lambda: attn_fwd(q, k, v, meta, cfg, MODE_WIN, scale, **args[MODE_WIN]),
        "combine": lambda: gated_combine(o_cmp[0], o_cmp[0], o_cmp[0], gates),
        "bwd_slc_work": lambda: slc_work(sel, k.shape[1]),
    }
    for mode, label in ((MODE_CMP, "cmp"), (MODE_SLC, "slc"), (MODE_WIN, "win")):
        kk, vv, dkk, dvv = keys[mode]
        stages[f"bwd_{label}_dq"] = lambda mode=mode, kk=kk, vv=vv: attn_dq(
            q, kk, vv, do, lse_c, delta, dq, meta, cfg, mode, scale, sel=s.get(mode), **bwd[mode]
        )
        stages[f"bwd_{label}_dkdv"] = lambda mode=mode, kk=kk, vv=vv, dkk=dkk, dvv=dvv: attn_dkdv(
            q, kk, vv, do, lse_c, delta, dkk, dvv, meta, cfg, mode, scale, sel=s.get(mode),
            work=work, **bwd[mode],
        )  # fmt: skip
    out = {name_: time_ms(fn, reps) for name_, fn in stages.items()}
    out["mean_union_blocks"] = sel.ucount.float().mean().item()
    return {"config": name, "T": T, "combine": cfg.combine, "tuning": str(tuning), "stages_ms": out}


def _fmt(row: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    p.add_argument("--combine", default="gated", choices=["gated", "union"])
    p.add_argument("--parts", default="tune,prefill,decode,breakdown")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default="bench/results/kernels-h200.json")
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
    }
    result["tuning"] = []
    for name in a.configs.split(","):
        tuning = KernelTuning().for_group(CONFIGS[name][0] // CONFIGS[name][1])
        if "tune" in parts:
            tuning, times = tune(name, max(lengths), cfg, a.reps)
            result["tuning"].append({"config": name, "T": max(lengths), "chosen": str(tuning),
                                     "fwd_ms": times})  # fmt: skip
            print(name, "tuning", tuning, {k: round(v, 3) for k, v in times.items()}, flush=True)
        for T in lengths:
            if "prefill" in parts:
                row = bench_prefill(name, T, cfg, tuning, a.reps)
                result["prefill"].append(row)
                print(_fmt(row), flush=True)
            if "decode" in parts:
                for batch in DECODE_BATCHES:
                    row = bench_decode(name, T, batch, cfg, a.reps * 4)
                    result["decode"].append(row)
                    print(_fmt(row), flush=True)
        if "breakdown" in parts:
            row = stage_breakdown(name, max(lengths), cfg, tuning, a.reps)
            result["breakdown"].append(row)
            print(name, max(lengths), {k: round(v, 3) for k, v in row["stages_ms"].items()})
        torch.cuda.empty_cache()
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
