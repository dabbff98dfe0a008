"""What a worker runs: a `JobRunner` turns a batch of `Task`s into `TaskResult`s, reporting
progress and streamed text through a `RunSink`. The queue and the Ray actors only know this
protocol; the real engine and the test stand-in both implement it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Task:
    """One job as a runner sees it: the packed context text and what to do with it."""

    job_id: str
    kind: str  # "ask" | "summarize"
    source: str
    context: str
    question: str | None
    max_new_tokens: int
    attempt: int


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A runner's answer for one task; `error` set means this attempt failed (retryable)."""

    job_id: str
    text: str = ""
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None


class RunSink(Protocol):
    """Where a runner reports while it works; implementations publish to the job's events."""

    def progress(self, job_id: str, done: int, total: int) -> None: ...

    def token(self, job_id: str, text: str) -> None: ...

    def cancelled(self, job_id: str) -> bool: ...

    def flush(self) -> None: ...


class JobRunner(Protocol):
    """Runs up to `max_batch` tasks together (an engine decodes them in one batch)."""

    max_batch: int

    def run(self, tasks: Sequence[Task], sink: RunSink) -> list[TaskResult]: ...


RunnerFactory = Callable[[], JobRunner]
"""Builds a runner inside the process that hosts it (a Ray actor loads its model there)."""
