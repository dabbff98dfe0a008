"""GPU: our engine vs Hugging Face transformers (SDPA) on Qwen2.5-1.5B shapes, random bf16.

Both models hold the same random weights. Prefill time at several prompt lengths and
decode time per step at batch 1 and 16 over an 8k context, medians of CUDA-event timings,
the two implementations measured in one run. Prints a table, writes JSON.

    python bench/engine_gpu.py [--out bench/results/engine-h200.json]
    python bench/engine_gpu.py --tiny     # tiny shapes, any device: checks the script
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import shlex
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from decode_kernels_gpu import attention_decode, projections_decode
from gpu_timing import HBM_BYTES_PER_S, Timer
from torch import Tensor

from nsa_assist.model.config import config_from_hf
from nsa_assist.model.transformer import Transformer
from nsa_assist.workers.engine import Engine, EngineConfig, Request, prefill
from nsa_assist.workers.kv_cache import KVCache
from nsa_assist.workers.sampling import SamplingParams

RESULTS = Path(__file__).parent / "results" / "engine-h200.json"

SHAPES = {  # Qwen2.5-Coder-1.5B
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
TINY_SHAPES = {**SHAPES, "vocab_size": 1024, "hidden_size": 128, "intermediate_size": 256}
TINY_SHAPES.update(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def build(
    shapes: dict[str, Any], device: torch.device, dtype: torch.dtype
) -> tuple[Any, Transformer]:
    """(HF Qwen2 with SDPA, ours) holding the same random weights."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hf_config = Qwen2Config(**shapes, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        hf = Qwen2ForCausalLM(hf_config).eval()
        for name, param in hf.named_parameters():
            if name.endswith("bias"):  # HF starts biases at 0; make them count
                torch.nn.init.normal_(param, std=0.02)
            # parameters only: `hf.to(bf16)` would also round its RoPE frequency buffer
            param.data = param.data.to(dtype)
        ours = Transformer(config_from_hf(hf_config.to_dict())).to(dtype).eval()
    ours.load_state_dict(hf.state_dict())
    ours.fuse_projections()
    return hf, ours


def guarded(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement; a failure is recorded (and printed) instead of ending the run,
    so one GPU call still returns every other number."""
    try:
        row = fn()
    except (RuntimeError, AssertionError, ValueError) as error:  # a kernel or shape refusal
        row = {"what": what, "error": f"{type(error).__name__}: {error}"}
    print(what, row, flush=True)
    return row


def bench_prefill(
    hf: Any, ours: Transformer, lengths: list[int], chunk: int, timer: Timer, runs: int
) -> list[dict[str, Any]]:
    return [
        guarded(f"prefill {n}", lambda n=n: prefill_row(hf, ours, n, chunk, timer, runs))
        for n in lengths
    ]


def prefill_row(
    hf: Any, ours: Transformer, length: int, chunk: int, timer: Timer, runs: int
) -> dict[str, Any]:
    """Prompt of `length` tokens: HF forward with a fresh cache vs our prefill (one chunk,
    and `chunk`-sized chunks when shorter than the prompt); logits for the last token only."""
    param = next(ours.parameters())
    ids = torch.randint(0, ours.config.vocab_size, (1, length), device=param.device)
    cache = KVCache(ours.config, 1, length, param.device, param.dtype, ours.attention)
    row: dict[str, Any] = {"tokens": length}
    row["transformers_ms"] = timer.median_ms(
        lambda: hf(ids, use_cache=True, logits_to_keep=1), runs
    )
    row["ours_ms"] = timer.median_ms(lambda: prefill(ours, cache, 0, ids[0], length), runs)
    if chunk < length:
        row[f"ours_chunk{chunk}_ms"] = timer.median_ms(
            lambda: prefill(ours, cache, 0, ids[0], chunk), runs
        )
    row["speedup"] = round(row["transformers_ms"] / row["ours_ms"], 2)
    return row


def hf_decode_ms(hf: Any, batch: int, context: int, steps: int, timer: Timer) -> float:
    """Per-step ms of HF's own KV-cache decode loop (greedy), after a batched prefill."""
    device = next(hf.parameters()).device
    ids = torch.randint(0, hf.config.vocab_size, (batch, context), device=device)
    out = hf(ids, use_cache=True, logits_to_keep=1)
    # transformers renamed past_key_values to cache (5.2x); accept either
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    keyword = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    token = out.logits[:, -1:].argmax(-1)

    def loop() -> None:
        nonlocal token
        for _ in range(steps):
            step = hf(token, use_cache=True, **{keyword: cache})
            token = step.logits[:, -1:].argmax(-1)

    return timer.ms(loop) / steps


def ours_decode(engine: Engine, batch: int, context: int, steps: int) -> float:
    """Per-step ms of `Engine.generate` decode (sampling and host sync included)."""
    vocab = engine.model.config.vocab_size
    requests = [
        Request(
            f"r{i}",
            torch.randint(0, vocab, (context,)).tolist(),
            SamplingParams(max_new_tokens=steps),
        )
        for i in range(batch)
    ]
    done = engine.generate(requests)
    assert all(len(c.token_ids) == steps for c in done)
    return max(c.decode_seconds for c in done) * 1e3 / (steps - 1)


def graph_replay_ms(engine: Engine, batch: int, context: int, timer: Timer, steps: int) -> float:
    """Per-step ms of the bare decode step (no sampling, no host sync) over a full cache."""
    device = engine.device
    tokens = torch.zeros(batch, dtype=torch.int64, device=device)
    positions = torch.full((batch,), context, dtype=torch.int64, device=device)

    def loop() -> None:
        for _ in range(steps):
            engine.decoder.step(tokens, positions, context + 1)

    loop()
    return timer.ms(loop) / steps


def cublas_step_ms(ours: Transformer, context: int, steps: int, timer: Timer) -> float:
    """The bare batch-1 step with cuBLAS for every projection instead of our GEMV kernel."""
    ours.triton_gemv = False
    try:
        settings = {"prefill_chunk": 8192, "max_seq_len": context + steps + 8}
        engine = Engine(ours, EngineConfig(max_batch_size=1, **settings))
        ours_decode(engine, 1, context, 4)  # captures the graph without the GEMV kernel
        return graph_replay_ms(engine, 1, context, timer, steps)
    finally:
        ours.triton_gemv = True


def decode_floor_ms(ours: Transformer, batch: int, context: int) -> float:
    """Weights plus this batch's KV cache read once at HBM bandwidth."""
    params = {p.data_ptr(): p.numel() * p.element_size() for p in ours.parameters()}
    config = ours.config
    kv = 2 * config.num_layers * config.num_kv_heads * config.head_dim * 2 * context * batch
    return (sum(params.values()) + kv) / HBM_BYTES_PER_S * 1e3


def bench_decode(
    hf: Any,
    ours: Transformer,
    context: int,
    batches: list[int],
    steps: int,
    timer: Timer,
    runs: int,
) -> list[dict[str, Any]]:
    settings = {"prefill_chunk": 8192, "max_seq_len": context + steps + 8}
    graphs = Engine(ours, EngineConfig(max_batch_size=max(batches), cuda_graphs=True, **settings))
    eager = Engine(ours, EngineConfig(max_batch_size=1, cuda_graphs=False, **settings))
    return [
        guarded(
            f"decode batch {b}",
            lambda b=b: decode_row(hf, graphs, eager, b, context, steps, timer, runs),
        )
        for b in batches
    ]


def decode_row(
    hf: Any,
    graphs: Engine,
    eager: Engine,
    batch: int,
    context: int,
    steps: int,
    timer: Timer,
    runs: int,
) -> dict[str, Any]:
    """ms per decode step at `batch` x `context`: HF's loop, our engine (CUDA graphs; and
    without them at batch 1), the bare graph replay, and the memory floor."""
    ours_decode(graphs, batch, context, 4)  # captures this batch's graph
    row: dict[str, Any] = {"batch": batch, "context": context}
    row["transformers_ms_per_step"] = statistics.median(
        hf_decode_ms(hf, batch, context, steps // 2, timer) for _ in range(runs)
    )
    row["ours_ms_per_step"] = statistics.median(
        ours_decode(graphs, batch, context, steps) for _ in range(runs)
    )
    row["ours_step_only_ms"] = graph_replay_ms(graphs, batch, context, timer, steps)
    if batch == 1:
        row["ours_step_only_cublas_ms"] = cublas_step_ms(graphs.model, context, steps, timer)
        ours_decode(eager, 1, context, 4)
        row["ours_no_graphs_ms_per_step"] = statistics.median(
            ours_decode(eager, 1, context, steps) for _ in range(runs)
        )
    floor = decode_floor_ms(graphs.model, batch, context)
    row["floor_ms"] = round(floor, 3)
    row["ours_tokens_per_s"] = round(batch * 1e3 / row["ours_ms_per_step"], 1)
    row["transformers_tokens_per_s"] = round(batch * 1e3 / row["transformers_ms_per_step"], 1)
    row["speedup"] = round(row["transformers_ms_per_step"] / row["ours_ms_per_step"], 2)
    row["ours_vs_floor"] = round(row["ours_ms_per_step"] / floor, 2)
    return row


def sanity(hf: Any, ours: Transformer, length: int, new_tokens: int) -> dict[str, Any]:
    """Same weights, same prompt: last-position logits and greedy tokens, ours vs HF."""
    device = next(ours.parameters()).device
    ids = torch.randint(0, ours.config.vocab_size, (1, length), device=device)
    theirs = hf(ids, logits_to_keep=1).logits[:, -1].float()
    mine = ours(ids, logits="last")
    engine = Engine(ours, EngineConfig(max_batch_size=1, max_seq_len=length + new_tokens + 1))
    (done,) = engine.generate(
        [Request("s", ids[0].tolist(), SamplingParams(max_new_tokens=new_tokens))]
    )
    reference = hf.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
    )[0, length:].tolist()
    same = next(
        (i for i, (a, b) in enumerate(zip(done.token_ids, reference, strict=True)) if a != b),
        new_tokens,
    )
    return {
        "prompt_tokens": length,
        "max_abs_logit_diff": round((mine - theirs).abs().max().item(), 4),
        "logit_scale": round(theirs.abs().max().item(), 4),
        "greedy_tokens_equal_prefix": same,
        "greedy_tokens": new_tokens,
    }


def sanity_fp32(hf: Any, ours: Transformer, length: int) -> dict[str, Any]:
    """Both bf16 models against HF in float32 (same weights) at the last position."""
    import copy

    device = next(ours.parameters()).device
    ids = torch.randint(0, ours.config.vocab_size, (1, length), device=device)
    reference = copy.deepcopy(hf).float()
    exact = reference(ids, logits_to_keep=1).logits[:, -1].float()
    del reference
    theirs = hf(ids, logits_to_keep=1).logits[:, -1].float()
    mine = ours(ids, logits="last")

    def error(x: Tensor) -> float:
        return round(((x - exact).norm() / exact.norm()).item(), 5)

    return {
        "prompt_tokens": length,
        "ours_bf16_rel_error": error(mine),
        "transformers_bf16_rel_error": error(theirs),
        "ours_vs_transformers_rel_diff": round(((mine - theirs).norm() / theirs.norm()).item(), 5),
        "argmax_equal_fp32": [
            int(mine.argmax()) == int(exact.argmax()),
            int(theirs.argmax()) == int(exact.argmax()),
        ],
    }


def profile_decode(ours: Transformer, context: int, path: Path) -> None:
    """Kernel table of 5 eager decode steps at batch 1 (where the step's time goes)."""
    from torch.profiler import ProfilerActivity, profile

    engine = Engine(
        ours, EngineConfig(max_batch_size=1, max_seq_len=context + 8, cuda_graphs=False)
    )
    tokens = torch.zeros(1, dtype=torch.int64, device=engine.device)
    positions = torch.full((1,), context, dtype=torch.int64, device=engine.device)
    engine.decoder.step(tokens, positions, context + 1)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            engine.decoder.step(tokens, positions, context + 1)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
    path.write_text(table)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes and lengths (script check)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="write a kernel table of eager decode here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        shapes, lengths, context, batches, steps, chunk = (
            TINY_SHAPES,
            [256, 512],
            256,
            [1, 4],
            8,
            128,
        )
    else:
        shapes, lengths, context, batches, steps, chunk = (
            SHAPES,
            [8192, 32768, 65536],
            8192,
            [1, 16],
            64,
            8192,
        )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    timer = Timer(device)
    with torch.inference_mode():
        hf, ours = build(shapes, device, dtype)
        results = {
            "sanity": guarded("sanity", lambda: sanity(hf, ours, min(lengths), 16)),
            "sanity_fp32": guarded("sanity fp32", lambda: sanity_fp32(hf, ours, min(lengths))),
            "prefill": bench_prefill(hf, ours, lengths, chunk, timer, args.runs),
            "decode": bench_decode(hf, ours, context, batches, steps, timer, min(args.runs, 3)),
        }
        if device.type == "cuda":
            results["decode_projections"] = guarded(
                "projections", lambda: {"rows": projections_decode(ours.config)}
            )
            results["decode_attention"] = [
                guarded(f"attention {b}", lambda b=b: attention_decode(ours.config, b, context))
                for b in batches
            ]
        if args.profile is not None and device.type == "cuda":
            profile_decode(ours, context, args.profile)
    write(args, device, dtype, hf, results)


def write(
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    hf: Any,
    results: dict[str, Any],
) -> None:
    import transformers

    record = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "shapes": "tiny" if args.tiny else "qwen2.5-coder-1.5b (random weights)",
        "dtype": str(dtype),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda": torch.version.cuda,
        },
        "transformers_attention": hf.config._attn_implementation,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"device: {record['device']}  dtype: {dtype}  sanity: {results['sanity']}")
    print(f"{'prefill tokens':>15}{'transformers ms':>17}{'ours ms':>10}{'speedup':>9}")
    for row in (r for r in results["prefill"] if "error" not in r):
        print(
            f"{row['tokens']:>15}{row['transformers_ms']:>17.1f}{row['ours_ms']:>10.1f}{row['speedup']:>9.2f}"
        )
    print(
        f"{'decode batch':>15}{'transformers ms':>17}{'ours ms':>10}{'floor ms':>10}{'speedup':>9}"
    )
    for row in (r for r in results["decode"] if "error" not in r):
        print(
            f"{row['batch']:>15}{row['transformers_ms_per_step']:>17.2f}"
            f"{row['ours_ms_per_step']:>10.2f}{row['floor_ms']:>10.2f}{row['speedup']:>9.2f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
