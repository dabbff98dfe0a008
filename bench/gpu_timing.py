"""GPU timing helpers shared by the bench scripts: CUDA-event timers and CUDA-graph replays."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

HBM_BYTES_PER_S = 4.3e12  # H200 memory bandwidth used for decode floors


class Timer:
    """Milliseconds of a callable: CUDA events on a GPU, wall clock elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def ms(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            began = time.perf_counter()
            fn()
            return (time.perf_counter() - began) * 1e3
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def median_ms(self, fn: Callable[[], object], runs: int) -> float:
        fn()  # warm-up
        return statistics.median(self.ms(fn) for _ in range(runs))


def capture_graph(
    fn: Callable[[], object], steps: int = 1, warmup: int = 1
) -> torch.cuda.CUDAGraph:
    """A CUDA graph of `steps` calls of fn back to back, warmed up off the capture stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(steps):
            fn()
    return graph


def graph_us(
    call: Callable[[], Tensor],
    reference: Tensor,
    layers: int = 28,
    captured: Callable[[], Tensor] | None = None,
) -> dict[str, Any]:
    """Median us per call of `captured` (default: `call`) run `layers` times in one CUDA
    graph; `call`'s output is checked against `reference`."""
    out = call()
    captured = captured or call
    error = ((out.float() - reference).norm() / reference.norm()).item()
    graph = capture_graph(captured, layers)
    for _ in range(3):
        graph.replay()
    timer = Timer(torch.device("cuda"))
    replays = [timer.ms(graph.replay) for _ in range(20)]
    return {"us": round(statistics.median(replays) * 1e3 / layers, 2), "rel_error": error}
