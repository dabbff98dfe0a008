"""Typed job records: what a caller submits (`JobSpec`), what the queue tracks (`Job`),
and what a finished job leaves behind (`JobResult`)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from enum import Enum

from .errors import InvalidJob

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""Ids become parts of Redis keys and file names: no spaces, slashes or control characters."""

DEFAULT_MAX_NEW_TOKENS = 512


class JobKind(str, Enum):
    ASK = "ask"
    SUMMARIZE = "summarize"


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as submitted. `question` is required for `ask` and absent for `summarize`."""

    kind: JobKind
    source: str
    question: str | None = None
    id: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, JobKind):
            raise InvalidJob(f"unknown kind {self.kind!r} (use 'ask' or 'summarize')")
        if not self.source.strip():
            raise InvalidJob("missing source")
        if self.kind is JobKind.ASK and not (self.question or "").strip():
            raise InvalidJob("an 'ask' job needs a question")
        if self.kind is JobKind.SUMMARIZE and self.question is not None:
            raise InvalidJob("a 'summarize' job takes no question")
        if self.id is not None and not JOB_ID_PATTERN.match(self.id):
            raise InvalidJob(f"bad job id {self.id!r}: letters, digits, '._:-', at most 128")
        if self.max_new_tokens <= 0:
            raise InvalidJob(f"max_new_tokens must be positive, got {self.max_new_tokens}")


@dataclass(frozen=True, slots=True)
class Job:
    """The queue's record of one job, as stored in its Redis hash."""

    id: str
    kind: JobKind
    source: str
    question: str | None
    status: JobStatus
    attempts: int
    max_new_tokens: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    progress: float = 0.0
    error: str | None = None
    worker: str | None = None

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> Job:
        def opt_float(name: str) -> float | None:
            value = fields.get(name)
            return float(value) if value else None

        return cls(
            id=fields["id"],
            kind=JobKind(fields["kind"]),
            source=fields["source"],
            question=fields.get("question") or None,
            status=JobStatus(fields["status"]),
            attempts=int(fields.get("attempts", "0")),
            max_new_tokens=int(fields["max_new_tokens"]),
            created_at=float(fields["created_at"]),
            started_at=opt_float("started_at"),
            finished_at=opt_float("finished_at"),
            retry_at=opt_float("retry_at"),
            progress=float(fields.get("progress") or 0.0),
            error=fields.get("error") or None,
            worker=fields.get("worker") or None,
        )

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["status"] = self.status.value
        return data


@dataclass(frozen=True, slots=True)
class JobResult:
    """A finished job's answer; stored once per job id (later duplicates are dropped)."""

    job_id: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    attempt: int
    worker: str

    def to_json(self) -> str:
        # a flat record: a comprehension is much cheaper than asdict's deep copy
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> JobResult:
        return cls(**json.loads(raw))
