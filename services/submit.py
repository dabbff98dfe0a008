"""Submitting a batch: pack each line's source into a context (with the model's tokenizer,
so the worker needs no access to the source), then queue the jobs in a few round trips.

A line whose source is missing, unreadable or too large for the budget is rejected with
its line number; the other lines are queued. A job already done is not queued again; one
that failed or was cancelled is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nsa_assist.ingest.context import CountTokens
from nsa_assist.ingest.errors import IngestError
from nsa_assist.ingest.pipeline import IngestOptions, ingest_source
from nsa_assist.ingest.prompt import framing_text

from .batch import BatchLine, LineError
from .errors import InvalidJob, JobStateError
from .jobs import JobSpec, JobStatus
from .queue import JobQueue

SUMMARY_QUESTION = (
    "Summarize this document: what it is for, its main parts and its conclusions. "
    "Cite pages as p. N."
)
"""What a `summarize` job asks of its packed document (and what its packing ranks for)."""

PROMPT_MARGIN = 32
"""Tokens kept free for the chat template's own markers."""


@dataclass(frozen=True, slots=True)
class ContextBuilder:
    """Packs a job's source into at most `budget` tokens, question and framing included.
    Relative sources are taken relative to `base_dir` (the batch file's folder)."""

    count_tokens: CountTokens
    budget: int
    base_dir: Path
    options: IngestOptions = field(default_factory=IngestOptions)

    def __post_init__(self) -> None:
        if self.budget <= PROMPT_MARGIN:
            raise InvalidJob(f"the budget must be over {PROMPT_MARGIN} tokens, got {self.budget}")

    def __call__(self, spec: JobSpec) -> str:
        path = Path(spec.source).expanduser()
        path = path if path.is_absolute() else self.base_dir / path
        if not path.exists():
            raise InvalidJob(f"source not found: {path}")
        question = spec.question or SUMMARY_QUESTION
        framing = self.count_tokens(framing_text(question)) + PROMPT_MARGIN
        if framing >= self.budget:
            raise InvalidJob(
                f"oversized: the question alone needs {framing} tokens, over the budget of "
                f"{self.budget}"
            )
        try:
            ingested = ingest_source(
                path, question, self.budget - framing, self.count_tokens, self.options
            )
        except IngestError as error:
            raise InvalidJob(str(error)) from None
        return ingested.context.text


@dataclass(frozen=True, slots=True)
class SubmitReport:
    """Ids queued now, ids already done (not queued), and lines rejected at submit."""

    queued: list[str]
    already_done: list[str]
    rejected: list[LineError]


def submit_lines(
    queue: JobQueue, lines: Sequence[BatchLine], build: ContextBuilder
) -> SubmitReport:
    """Pack and queue every line; a line that cannot be packed is rejected, not fatal."""
    ready: list[tuple[BatchLine, str]] = []
    rejected: list[LineError] = []
    for line in lines:
        try:
            ready.append((line, build(line.spec)))
        except InvalidJob as error:
            rejected.append(LineError(line.number, str(error)))
    accepted: list[tuple[BatchLine, str]] = []
    for line, context in ready:
        size = len(context.encode("utf-8"))
        if size > queue.config.max_context_bytes:
            limit = queue.config.max_context_bytes
            rejected.append(LineError(line.number, f"oversized: context of {size} bytes > {limit}"))
        else:
            accepted.append((line, context))
    submitted = queue.submit_many([(line.spec, context) for line, context in accepted])
    queued, done = [], []
    existing = [s.job_id for s in submitted if not s.created]
    states = dict(zip(existing, queue.get_many(existing), strict=True))
    for item in submitted:
        job = states.get(item.job_id)
        if job is not None and job.status is JobStatus.DONE:
            done.append(item.job_id)
            continue
        if job is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            try:
                queue.retry(item.job_id)
            except JobStateError as error:
                number = next(line.number for line, _ in accepted if line.spec.id == item.job_id)
                rejected.append(LineError(number, str(error)))
                continue
        queued.append(item.job_id)
    return SubmitReport(queued, done, sorted(rejected, key=lambda e: e.number))
