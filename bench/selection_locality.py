"""How many selected blocks neighbouring queries share: a real model's q/k against random ones.

The selection branch's kernels (kernels/nsa/attention.py) load, per KV head, the union of the
blocks a tile's positions selected. On random inputs (bench/kernels.py) neighbours share
almost nothing, each position gathers its own n blocks, and the branch is bound by that
gather (kernels/NOTES.md). Whether a kernel built around shared blocks would pay depends on
real activations, which this measures: the bundled Qwen2.5-Coder 0.5B reads T tokens of
real source code (the standard library), the queries and keys of a few layers (RoPE applied,
taken from the attention backend) go through NSA's block selection (kernels.reference, mean
compression, the paper's l, d, l', n, w), and for tiles of P consecutive positions we report
the distinct blocks per position per KV head, next to random q/k of the same shapes. Only
positions that can select n blocks (t >= n * l') count.

    python bench/selection_locality.py [--tokens 16384] [--layers 1,8,16,23] [--save-idx F]

--save-idx keeps both selections of each layer (int32 [T, H_kv, n]) for bench/kernels.py
--parts slc_real, which times the selection kernels on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import platform
import sys
import time
from pathlib import Path

import torch

from nsa_assist.kernels.nsa import NSAConfig
from nsa_assist.kernels.nsa.compress import compress_mean
from nsa_assist.kernels.reference import nsa_reference
from nsa_assist.model.attention import DenseAttention
from nsa_assist.model.loader import load_model

RESULTS = Path(__file__).parent / "results" / "selection-locality-cpu.json"
TILE_POSITIONS = (1, 2, 4, 8, 16, 64)
SOURCE_MODULES = (
    "argparse", "inspect", "typing", "dataclasses", "pathlib", "json.decoder", "json.encoder",
    "logging", "subprocess", "tarfile", "zipfile", "email.message", "http.client", "asyncio.tasks",
)  # fmt: skip


class RecordingAttention(DenseAttention):
    """Dense attention that keeps the queries and keys (RoPE applied) of chosen layers."""

    def __init__(self, config, layers: set[int]) -> None:
        super().__init__(config, triton=False)
        self.layers = layers
        self.seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, q, kv, batch, layer):
        if layer in self.layers:
            self.seen[layer] = (q[0].detach().clone(), kv.keys()[0].detach().clone())
        return super().forward(q, kv, batch, layer)


def source_ids(tokenizer, tokens: int) -> list[int]:
    """`tokens` ids of real Python: standard library modules, one after another."""
    ids: list[int] = []
    for name in SOURCE_MODULES:
        ids += tokenizer.encode(inspect.getsource(importlib.import_module(name)))
        if len(ids) >= tokens:
            return ids[:tokens]
    raise SystemExit(f"the source modules hold only {len(ids)} tokens; ask for fewer")


def selected_blocks(q: torch.Tensor, k: torch.Tensor, cfg: NSAConfig) -> torch.Tensor:
    """idx [T, H_kv, n] of NSA's selection for one sequence (values are not needed: v = k)."""
    cu = [0, q.shape[0]]
    kc = compress_mean(k, cu, cfg)
    _, idx = nsa_reference(q, k, k, kc, kc, cfg, return_indices=True)
    return idx


def union_per_position(idx: torch.Tensor, first: int, P: int) -> float:
    """Mean over tiles of P consecutive positions (from `first`) and KV heads of the number
    of distinct selected blocks, divided by P."""
    T, H_kv, n = idx.shape
    usable = (T - first) // P * P
    tiles = idx[first : first + usable].reshape(-1, P, H_kv, n).permute(0, 2, 1, 3)
    tiles = tiles.reshape(-1, P * n).sort(-1).values  # [tiles x H_kv, P n]
    distinct = (tiles[:, 1:] != tiles[:, :-1]).sum(-1) + 1 - (tiles[:, 0] < 0).long()
    return distinct.float().mean().item() / P


def shared_with_previous(idx: torch.Tensor, first: int) -> float:
    """Mean fraction of a position's n blocks its predecessor also selected."""
    cur, prev = idx[first:], idx[first - 1 : -1]
    same = (cur[..., :, None] == prev[..., None, :]).any(-1) & (cur >= 0)
    return same.float().mean().item()


def locality(idx: torch.Tensor, cfg: NSAConfig) -> dict:
    first = cfg.n_selected * cfg.slc_block
    return {
        "blocks_per_position": {
            P: round(union_per_position(idx, first, P), 3) for P in TILE_POSITIONS
        },
        "shared_with_previous": round(shared_with_previous(idx, first), 3),
    }


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--home", type=Path, default=Path("~/.cache/nsa-assist").expanduser())
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--layers", default="1,8,16,23")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--save-idx", type=Path, help="also save the selections (torch.save)")
    a = p.parse_args(argv)
    cfg = NSAConfig(combine="union")
    layers = {int(x) for x in a.layers.split(",")}
    started = time.perf_counter()
    loaded = load_model(a.model, home=a.home, device="cpu", dtype=torch.float32)
    recorder = RecordingAttention(loaded.config, layers)
    loaded.model.set_attention(recorder)
    ids = torch.tensor([source_ids(loaded.tokenizer, a.tokens)])
    print(f"prefill of {a.tokens} tokens ...", file=sys.stderr, flush=True)
    with torch.inference_mode():
        loaded.model(ids, logits="none")
    print(f"  {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    gen = torch.Generator().manual_seed(0)
    rows, saved = [], {}
    for layer in sorted(layers):
        q, k = recorder.seen[layer]
        idx_real = selected_blocks(q, k, cfg)
        idx_rand = selected_blocks(
            torch.randn(q.shape, generator=gen), torch.randn(k.shape, generator=gen), cfg
        )
        saved[layer] = {"real": idx_real.int(), "random": idx_rand.int()}
        real, rand = locality(idx_real, cfg), locality(idx_rand, cfg)
        rows.append({"layer": layer, "real": real, "random": rand})
        print(f"layer {layer}: blocks/position real {real['blocks_per_position']}, random "
              f"{rand['blocks_per_position']}; shared with the previous position "
              f"{real['shared_with_previous']} vs {rand['shared_with_previous']}",
              flush=True)  # fmt: skip
    result = {
        "command": "python " + " ".join(sys.argv),
        "model": loaded.name,
        "tokens": a.tokens,
        "nsa": dataclasses.asdict(cfg),
        "heads": {"H": loaded.config.num_heads, "H_kv": loaded.config.num_kv_heads},
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seconds": round(time.perf_counter() - started, 1),
        "layers": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    if a.save_idx:
        torch.save({"model": loaded.name, "tokens": a.tokens, "idx": saved}, a.save_idx)


if __name__ == "__main__":
    main(sys.argv[1:])
