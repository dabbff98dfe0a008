"""CPU: our engine vs Hugging Face transformers on the same GGUF and the same prompt.

Measures load time, prefill tokens/s and decode tokens/s (medians over runs, the two
implementations interleaved so machine load hits both alike), prints a table and writes
JSON to bench/results/engine-cpu.json.

    python bench/engine_cpu.py [--model qwen2.5-coder-0.5b-instruct] [--prompt-tokens 1536]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from nsa_assist.model.loader import LoadedModel, load_model
from nsa_assist.workers.engine import Engine, EngineConfig, Request
from nsa_assist.workers.sampling import SamplingParams

RESULTS = Path(__file__).parent / "results" / "engine-cpu.json"


@dataclass
class Runs:
    """Per-run measurements of one implementation."""

    load_seconds: float
    prefill_tok_s: list[float] = field(default_factory=list)
    decode_tok_s: list[float] = field(default_factory=list)

    def add(self, prefill_tok_s: float, decode_tok_s: float) -> None:
        self.prefill_tok_s.append(prefill_tok_s)
        self.decode_tok_s.append(decode_tok_s)

    def summary(self) -> dict[str, Any]:
        return {
            "load_seconds": round(self.load_seconds, 2),
            "prefill_tok_s": round(statistics.median(self.prefill_tok_s), 2),
            "decode_tok_s": round(statistics.median(self.decode_tok_s), 2),
            "prefill_runs": [round(x, 2) for x in self.prefill_tok_s],
            "decode_runs": [round(x, 2) for x in self.decode_tok_s],
        }


def prompt_ids(loaded: LoadedModel, tokens: int) -> list[int]:
    """`tokens` ids of real code (the standard library's json and argparse sources)."""
    import argparse as argparse_module
    import json.decoder

    text = inspect.getsource(json.decoder) + inspect.getsource(argparse_module)
    ids = loaded.tokenizer.encode(text)
    assert len(ids) >= tokens, f"source text too short: {len(ids)} tokens"
    return ids[:tokens]


def ours_once(engine: Engine, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) of one greedy generation."""
    params = SamplingParams(max_new_tokens=new_tokens)
    (done,) = engine.generate([Request("bench", prompt, params)])
    assert len(done.token_ids) == new_tokens
    return len(prompt) / done.prefill_seconds, (new_tokens - 1) / done.decode_seconds


class _Clock:
    """A transformers streamer that timestamps the prompt and every generated token."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        self.times.append(time.perf_counter())


def hf_once(model: Any, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) of one greedy `generate`."""
    ids = torch.tensor([prompt])
    clock = _Clock()
    began = time.perf_counter()
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        streamer=clock,
    )
    assert out.shape[1] == len(prompt) + new_tokens
    first_token = clock.times[1]  # times[0]: the prompt is handed to the streamer
    return len(prompt) / (first_token - began), (new_tokens - 1) / (clock.times[-1] - first_token)


def load_hf(source: Path) -> tuple[Any, float]:
    from transformers import AutoModelForCausalLM

    began = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        str(source.parent), gguf_file=source.name, dtype=torch.float32
    ).eval()
    return model, time.perf_counter() - began


def logit_gap(loaded: LoadedModel, hf_model: Any, prompt: list[int]) -> float:
    """Max |ours - HF| over the last position's logits: both must run the same model."""
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        ours = loaded.model(ids, logits="last")
        theirs = hf_model(ids, logits_to_keep=1).logits[:, -1]
    return (ours - theirs).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--home", type=Path, default=Path("~/.cache/nsa-assist").expanduser())
    parser.add_argument("--prompt-tokens", type=int, default=1536)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefill-chunk", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--bf16", action="store_true", help="also time ours in bfloat16 (1 run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model, home=args.home, device="cpu", dtype=torch.float32)
    prompt = prompt_ids(loaded, args.prompt_tokens)
    config = EngineConfig(
        max_batch_size=1,
        prefill_chunk=args.prefill_chunk,
        max_seq_len=args.prompt_tokens + args.new_tokens + 1,
    )
    engine = Engine(loaded.model, config)
    hf_model, hf_load = load_hf(loaded.source)
    ours, theirs = Runs(loaded.load_seconds), Runs(hf_load)
    with torch.inference_mode():
        ours_once(engine, prompt[:64], 4)  # warm-up both (first-call allocations)
        hf_once(hf_model, prompt[:64], 4)
        for _ in range(args.runs):
            ours.add(*ours_once(engine, prompt, args.new_tokens))
            theirs.add(*hf_once(hf_model, prompt, args.new_tokens))
    results: dict[str, Any] = {
        "ours_float32": ours.summary(),
        "transformers_float32": theirs.summary(),
        "max_abs_logit_diff": logit_gap(loaded, hf_model, prompt[:256]),
    }
    hf_model = None  # free its weights before loading a second copy of ours
    if args.bf16:
        results["ours_bfloat16"] = bf16_once(args, prompt, config)
    write(args, results)


def bf16_once(args: argparse.Namespace, prompt: list[int], config: EngineConfig) -> dict[str, Any]:
    loaded = load_model(args.model, home=args.home, device="cpu", dtype=torch.bfloat16)
    runs = Runs(loaded.load_seconds)
    with torch.inference_mode():
        runs.add(*ours_once(Engine(loaded.model, config), prompt, args.new_tokens))
    return runs.summary()


def write(args: argparse.Namespace, results: dict[str, Any]) -> None:
    record = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "model": args.model,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "runs": args.runs,
        "prefill_chunk": args.prefill_chunk,
        "threads": args.threads,
        "device": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": metadata.version("transformers"),
            "gguf": metadata.version("gguf"),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{'implementation':<22}{'load s':>9}{'prefill tok/s':>15}{'decode tok/s':>14}")
    for name, row in results.items():
        if isinstance(row, dict):
            print(
                f"{name:<22}{row['load_seconds']:>9.2f}"
                f"{row['prefill_tok_s']:>15.1f}{row['decode_tok_s']:>14.2f}"
            )
    print(f"max |logit diff| ours vs transformers: {results['max_abs_logit_diff']:.2e}")
    print(f"wrote {args.out}")


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
