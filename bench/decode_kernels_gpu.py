"""GPU: the batch-1 decode kernels one by one, Qwen2.5-1.5B shapes, bf16.

Our GEMV vs cuBLAS per projection, our split-KV decode attention vs FlashAttention-2, each
call replayed 28 times from one CUDA graph (per-layer weights, as in the model), and a tuning
sweep of both kernels' tile settings. `bench/engine_gpu.py` runs the comparison rows as part
of its report; the sweep runs here:

    python3 bench/decode_kernels_gpu.py --sweep bench/results/decode-sweep-h200.json
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from gpu_timing import HBM_BYTES_PER_S, graph_us
from torch import Tensor

from nsa_assist.model.config import config_from_hf


def projection_shapes(config: Any) -> dict[str, tuple[int, int, bool]]:
    """name -> (N, K, has bias) of the batch-1 decode projections."""
    hidden, inner = config.hidden_size, config.intermediate_size
    qkv = (config.num_heads + 2 * config.num_kv_heads) * config.head_dim
    return {
        "qkv": (qkv, hidden, True),
        "o": (hidden, hidden, False),
        "gate_up": (2 * inner, hidden, False),
        "down": (hidden, inner, False),
        "lm_head": (config.vocab_size, hidden, False),
    }


def projections_decode(config: Any) -> list[dict[str, Any]]:
    """us per batch-1 projection (28 calls replayed from one CUDA graph): our GEMV kernel
    vs F.linear (cuBLAS), and each one's floor (the weight read once)."""
    from nsa_assist.kernels.dense import gemv

    variants = {"gemv": gemv, "cublas": torch.nn.functional.linear}
    shapes = projection_shapes(config)
    return [_projection_row(name, *shape, variants) for name, shape in shapes.items()]


def sweep_decode_kernels(config: Any, context: int) -> dict[str, Any]:
    """Tuning sweep: GEMV rows per program x tile per projection shape (the down projection
    also with the SwiGLU gate fused), and the decode attention's program target x keys per
    tile. Each variant timed as in `projections_decode` / `attention_decode`."""
    from nsa_assist.kernels.dense import gemv, silu_mul

    variants: dict[str, Callable[..., Tensor]] = {"cublas": torch.nn.functional.linear}
    for rows in (2, 4, 8, 16):
        for tile in (1024, 2048, 4096):
            variants[f"r{rows}_t{tile}"] = functools.partial(gemv, rows=rows, tile=tile)
    shapes = projection_shapes(config)
    rows_out = [_projection_row(name, *shape, variants) for name, shape in shapes.items()]
    n, k, _ = shapes["down"]
    swiglu: dict[str, Callable[..., Tensor]] = {
        "unfused_default": lambda x, w, b: gemv(silu_mul(x), w, b),
    }
    for rows in (2, 4, 8):
        for tile in (1024, 2048, 4096):
            swiglu[f"fused_r{rows}_t{tile}"] = functools.partial(
                gemv, swiglu=True, rows=rows, tile=tile
            )
    rows_out.append(_projection_row("down_swiglu", n, k, False, swiglu, input_width=2 * k))
    attention = [
        attention_decode(config, 1, context, {"programs": p, "block_n": b})
        for p in (132, 264, 528)
        for b in (32, 64, 128)
    ]
    return {"projections": rows_out, "attention": attention}


def _projection_row(
    name: str,
    n: int,
    k: int,
    has_bias: bool,
    variants: dict[str, Callable[..., Tensor]],
    input_width: int | None = None,
) -> dict[str, Any]:
    """One projection shape, each variant timed; each of the graph's calls reads its own
    weight, as layers do (one weight reused would sit in the 50 MB L2). `input_width` 2K:
    the input is a gate/up pair and the reference applies SwiGLU first."""
    from nsa_assist.kernels.dense.reference import silu_mul_reference

    calls = 28 if name != "lm_head" else 4
    weights = [
        torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5 for _ in range(calls)
    ]
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16) if has_bias else None
    x = torch.randn(1, 1, input_width or k, device="cuda", dtype=torch.bfloat16)
    gated = silu_mul_reference(x) if input_width else x
    reference = torch.nn.functional.linear(
        gated.float(), weights[0].float(), None if bias is None else bias.float()
    )
    row: dict[str, Any] = {"name": name, "n": n, "k": k}
    row["floor_us"] = round(n * k * 2 / HBM_BYTES_PER_S * 1e6, 2)
    for kind, project in variants.items():
        cycle = itertools.cycle(weights)
        row[kind] = graph_us(
            lambda p=project: p(x, weights[0], bias),
            reference,
            calls,
            lambda p=project, c=cycle: p(x, next(c), bias),
        )
    return row


def attention_decode(
    config: Any, batch: int, context: int, tuning: dict[str, int] | None = None
) -> dict[str, Any]:
    """us per decode-attention call (28 calls replayed from one CUDA graph) and its error
    against float32 masked SDPA: our split-KV Triton kernel (at an extent equal to the
    cache and at a 2x extent bucket) and FlashAttention-2 varlen, side by side."""
    from nsa_assist.kernels.dense import gqa_decode
    from nsa_assist.model.attention import DenseAttention, _StepPlan
    from nsa_assist.model.flash import flash_decode

    heads, kv_heads, dim = config.num_heads, config.num_kv_heads, config.head_dim
    capacity, dtype = context + 64, torch.bfloat16
    k = torch.randn(batch, capacity, kv_heads, dim, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    q = torch.randn(batch, 1, heads, dim, device="cuda", dtype=dtype)
    q_rows = q.view(batch, heads, dim)
    kv_len = torch.full((batch,), context + 1, dtype=torch.int32, device="cuda")
    plan = _StepPlan(kv_len, capacity)
    reference = DenseAttention(config)._decode(q.float(), k.float(), v.float(), plan.mask())
    row: dict[str, Any] = {
        "batch": batch,
        "context": context,
        "floor_us": round(
            2 * batch * (context + 1) * kv_heads * dim * 2 / HBM_BYTES_PER_S * 1e6, 2
        ),
    }
    if tuning is not None:  # a sweep point: only our kernel, with these settings
        row.update(tuning)
        row["triton"] = graph_us(
            lambda: gqa_decode(q_rows, k, v, kv_len, capacity, **tuning).view(batch, 1, heads, dim),
            reference,
        )
        return row
    calls = {
        "triton": lambda: gqa_decode(q_rows, k, v, kv_len, capacity),
        "triton_extent_2x": lambda: gqa_decode(q_rows, k, v, kv_len, 2 * context),
        "flash": lambda: flash_decode(q, k, v, kv_len, capacity, plan.offsets),
    }
    for name, call in calls.items():
        row[name] = graph_us(lambda call=call: call().view(batch, 1, heads, dim), reference)
    return row


def print_sweep(result: dict[str, Any]) -> None:
    """The best variant per projection shape and per attention setting, with cuBLAS."""
    for row in result["projections"]:
        timed = {k: v["us"] for k, v in row.items() if isinstance(v, dict)}
        ranked = sorted(timed.items(), key=lambda kv: kv[1])
        print(f"{row['name']:>12} floor {row['floor_us']:6.2f} us, fastest: {ranked[:4]}")
        print(f"{'':>12} cublas {timed.get('cublas', float('nan')):.2f} us")
    for row in result["attention"]:
        us = row["triton"]["us"]
        print(f"attention programs {row['programs']:>4} block_n {row['block_n']:>4}: {us:.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, required=True, help="write the sweep JSON here")
    args = parser.parse_args()
    from engine_gpu import SHAPES

    config = config_from_hf({**SHAPES, "model_type": "qwen2"})
    with torch.inference_mode():
        result = sweep_decode_kernels(config, context=8192)
    args.sweep.write_text(json.dumps(result, indent=1) + "\n")
    print_sweep(result)


if __name__ == "__main__":
    main()
