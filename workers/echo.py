"""A deterministic stand-in for the engine, for tests and the queue benchmark only.

`EchoRunner` answers without a model: the reply names the job and a digest of its context,
one word per "token". Markers in the question steer it: `delay-per-token=S` sleeps S
seconds per token (to keep a job running while a test kills its worker), and
`fail-attempts=N` fails attempts 1..N.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .runner import RunSink, Task, TaskResult

_FAIL_MARK = re.compile(r"fail-attempts=(\d+)")
_DELAY_MARK = re.compile(r"delay-per-token=([0-9.]+)")


def echo_answer(task: Task) -> str:
    """The exact text EchoRunner produces for `task` (tests compare against it)."""
    digest = hashlib.sha256(task.context.encode()).hexdigest()[:12]
    asked = task.question if task.question is not None else "summarize"
    return f"echo {task.job_id} {task.kind} context:{digest} asked: {asked}"


@dataclass
class EchoRunner:
    """Test stand-in for the engine: deterministic text, no model."""

    max_batch: int = 32

    def __post_init__(self) -> None:
        assert self.max_batch > 0

    def run(self, tasks: Sequence[Task], sink: RunSink) -> list[TaskResult]:
        results = [self._run_one(task, sink) for task in tasks]
        sink.flush()
        return results

    def _run_one(self, task: Task, sink: RunSink) -> TaskResult:
        start = time.perf_counter()
        marked = _FAIL_MARK.search(task.question or "")
        if marked and task.attempt <= int(marked.group(1)):
            return TaskResult(task.job_id, finish_reason="error", error="injected failure")
        delay = _DELAY_MARK.search(task.question or "")
        delay_s = float(delay.group(1)) if delay else 0.0
        full = echo_answer(task).split(" ")
        words = full[: task.max_new_tokens]
        emitted: list[str] = []
        for i, word in enumerate(words):
            if sink.cancelled(task.job_id):
                return TaskResult(task.job_id, " ".join(emitted), "cancelled")
            piece = word if i == 0 else " " + word
            sink.token(task.job_id, piece)
            emitted.append(word)
            sink.progress(task.job_id, i + 1, len(words))
            if delay_s:
                time.sleep(delay_s)
        return TaskResult(
            job_id=task.job_id,
            text=" ".join(emitted),
            finish_reason="stop" if len(words) == len(full) else "length",
            prompt_tokens=len(task.context.split()),
            completion_tokens=len(emitted),
            seconds=time.perf_counter() - start,
        )
