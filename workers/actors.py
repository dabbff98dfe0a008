"""The Ray actor that hosts one runner (one engine, one model copy, one GPU if any)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import ray

from .runner import RunnerFactory, RunSink, Task, TaskResult


class RunnerHost:
    """Built inside the actor's process: the factory loads the model there, once.

    Ray restarts a dead actor by running this constructor again, so the model is reloaded
    and the pool keeps its size.
    """

    def __init__(self, factory: RunnerFactory, sink: RunSink) -> None:
        self._runner = factory()
        self._sink = sink

    def run(self, tasks: Sequence[Task]) -> list[TaskResult]:
        """Run one batch; an exception fails every task of the batch (they are retried)."""
        assert len(tasks) <= self._runner.max_batch, "the pool never sends more than max_batch"
        return self._runner.run(tasks, self._sink)

    def max_batch(self) -> int:
        return self._runner.max_batch

    def where(self) -> dict[str, object]:
        """Where this actor runs: pid, Ray node id and the GPU ids it was given."""
        context = ray.get_runtime_context()
        return {"pid": os.getpid(), "node": context.get_node_id(), "gpus": ray.get_gpu_ids()}
