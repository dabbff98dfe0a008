"""Batch files: one job per JSONL line, checked line by line so one bad line never stops
the rest; and the results file, one line per job, which a re-run reads to skip done ids.

A line is `{"id", "source", "question"}` or `{"id", "source", "task": "summarize"}`;
`id` is optional (a stable id is derived from the line) and `max_new_tokens` may be set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidJob
from .jobs import Job, JobKind, JobResult, JobSpec

KNOWN_FIELDS = frozenset({"id", "source", "question", "task", "max_new_tokens"})


@dataclass(frozen=True, slots=True)
class BatchLine:
    """A valid line: its 1-based number and the job it asks for."""

    number: int
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class LineError:
    """A rejected line and why; shown as `FILE:LINE: message`."""

    number: int
    message: str


def derived_id(raw: str) -> str:
    """A stable id for a line without one, so a re-run recognizes the same job."""
    return "line-" + hashlib.sha256(raw.strip().encode()).hexdigest()[:16]


def parse_line(raw: str, max_new_tokens: int) -> JobSpec:
    """The job a line asks for; raises InvalidJob with a message naming what is wrong."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidJob(f"malformed JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(data, dict):
        raise InvalidJob("a line must be a JSON object")
    unknown = sorted(set(data) - KNOWN_FIELDS)
    if unknown:
        raise InvalidJob(f"unknown field(s) {', '.join(map(repr, unknown))}")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise InvalidJob("missing source")
    task = data.get("task", "ask")
    try:
        kind = JobKind(task)
    except ValueError:
        raise InvalidJob(
            f"unknown kind {task!r} (use 'ask' with a question, or 'summarize')"
        ) from None
    question = data.get("question")
    if question is not None and not isinstance(question, str):
        raise InvalidJob("question must be a string")
    job_id = data.get("id", derived_id(raw))
    if not isinstance(job_id, str):
        raise InvalidJob("id must be a string")
    tokens = data.get("max_new_tokens", max_new_tokens)
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise InvalidJob("max_new_tokens must be an integer")
    return JobSpec(kind=kind, source=source, question=question, id=job_id, max_new_tokens=tokens)


def read_batch(path: Path, max_new_tokens: int) -> tuple[list[BatchLine], list[LineError]]:
    """Every line of `path`, sorted into valid jobs and rejected lines (blank lines skipped)."""
    lines: list[BatchLine] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                spec = parse_line(raw, max_new_tokens)
            except InvalidJob as error:
                errors.append(LineError(number, str(error)))
                continue
            assert spec.id is not None
            if spec.id in seen:
                errors.append(LineError(number, f"id {spec.id!r} repeats line {seen[spec.id]}"))
                continue
            seen[spec.id] = number
            lines.append(BatchLine(number, spec))
    return lines, errors


def result_record(spec: JobSpec, job: Job | None, result: JobResult | None) -> dict[str, object]:
    """One line of the results file."""
    record: dict[str, object] = {
        "id": spec.id,
        "kind": spec.kind.value,
        "source": spec.source,
        "status": job.status.value if job else "expired",
        "attempts": job.attempts if job else None,
        "error": job.error if job and job.status.value != "done" else None,
    }
    if spec.question is not None:
        record["question"] = spec.question
    if result is not None:
        record |= {
            "answer": result.text,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "seconds": round(result.seconds, 3),
            "worker": result.worker,
        }
    return record


def read_done(path: Path) -> dict[str, dict[str, object]]:
    """Records of jobs already done in an earlier run's results file (absent: none)."""
    if not path.exists():
        return {}
    done: dict[str, dict[str, object]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("status") == "done":
            done[str(record.get("id"))] = record
    return done


def write_results(path: Path, records: list[dict[str, object]]) -> None:
    """Replace `path` atomically, so an interrupted write never loses earlier results."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)
