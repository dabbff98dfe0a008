"""The client side of the job queue: submit, look up, list, cancel, retry, read results.

Jobs go into one Redis stream read by a consumer group of workers (see `consumer.py`).
Each job also has a hash (its record), an optional zlib-compressed context with a TTL, a
result kept for `result_ttl_s`, and an event stream (`events.py`).
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from .config import Keys, QueueConfig
from .connect import check_reachable, connect
from .errors import InvalidJob, JobNotFound, JobStateError
from .jobs import Job, JobResult, JobSpec, JobStatus
from .scripts import CANCEL, RETRY, SUBMIT

CONTEXT_COMPRESSION_LEVEL = 6
LIVE_HEARTBEATS = 3
"""A worker silent for this many of its heartbeat intervals is taken for gone."""
SUBMIT_PIPELINE = 200
"""Jobs per round trip when submitting many at once."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """What submit returns: the job's id, and False when an existing job was returned."""

    job_id: str
    created: bool


def compress_context(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), CONTEXT_COMPRESSION_LEVEL)


def decompress_context(blob: bytes) -> str:
    return zlib.decompress(blob).decode("utf-8")


def ensure_group(client: redis.Redis, keys: Keys, group: str) -> None:
    """Create the stream and its consumer group once; later calls change nothing."""
    try:
        client.xgroup_create(keys.stream, group, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class JobQueue:
    """Submit jobs and read their state. Safe to use from many processes at once."""

    def __init__(self, url: str, config: QueueConfig, *, patient: bool = False) -> None:
        self.url = url
        self.config = config
        self.keys = Keys(config.prefix)
        self.redis = connect(url, patient=patient)
        self._raw = connect(url, patient=patient, decode=False)
        check_reachable(self.redis, url)
        ensure_group(self.redis, self.keys, config.group)
        self._submit = self.redis.register_script(SUBMIT)
        self._cancel = self.redis.register_script(CANCEL)
        self._retry = self.redis.register_script(RETRY)

    def close(self) -> None:
        self.redis.close()
        self._raw.close()

    def submit(self, spec: JobSpec, context: str | None = None) -> Submitted:
        """Queue one job; an id or idempotency key seen before returns the existing job."""
        return self.submit_many([(spec, context)])[0]

    def submit_many(self, items: Sequence[tuple[JobSpec, str | None]]) -> list[Submitted]:
        """Queue many jobs with few round trips (one pipeline per `SUBMIT_PIPELINE`)."""
        out: list[Submitted] = []
        for start in range(0, len(items), SUBMIT_PIPELINE):
            pipe = self.redis.pipeline(transaction=False)
            for spec, context in items[start : start + SUBMIT_PIPELINE]:
                keys, args = self._submit_call(spec, context)
                self._submit(keys=keys, args=args, client=pipe)
            out.extend(Submitted(str(job_id), bool(created)) for job_id, created in pipe.execute())
        return out

    def _submit_call(self, spec: JobSpec, context: str | None) -> tuple[list[str], list[object]]:
        size = 0 if context is None else len(context.encode("utf-8"))
        if size > self.config.max_context_bytes:
            raise InvalidJob(
                f"context of {size} bytes is over the limit of {self.config.max_context_bytes}"
            )
        blob = b"" if context is None else compress_context(context)
        job_id = spec.id or uuid.uuid4().hex
        idem = spec.idempotency_key
        fields: dict[str, object] = {
            "id": job_id,
            "kind": spec.kind.value,
            "source": spec.source,
            "question": spec.question or "",
            "max_new_tokens": spec.max_new_tokens,
            "status": JobStatus.QUEUED.value,
            "attempts": 0,
            "created_at": repr(time.time()),
            "has_context": int(context is not None),
        }
        keys = [
            self.keys.job(job_id),
            self.keys.idempotency(idem or job_id),
            self.keys.stream,
            self.keys.index,
            self.keys.context(job_id),
        ]
        flat = [item for pair in fields.items() for item in pair]
        args = [job_id, fields["created_at"], "1" if idem else "0", blob]
        args += [self.config.context_ttl_s, self.config.result_ttl_s, *flat]
        return keys, args

    def get(self, job_id: str) -> Job:
        fields = self.redis.hgetall(self.keys.job(job_id))
        if not fields:
            raise JobNotFound(f"no job {job_id!r} (never submitted, or expired)")
        return Job.from_hash(fields)

    def get_many(self, job_ids: Iterable[str]) -> list[Job | None]:
        """Records in the order asked; None where a job is unknown or expired."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        return [Job.from_hash(fields) if fields else None for fields in pipe.execute()]

    def result(self, job_id: str) -> JobResult | None:
        raw = self.redis.get(self.keys.result(job_id))
        return JobResult.from_json(raw) if raw is not None else None

    def results(self, job_ids: Sequence[str]) -> list[JobResult | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.get(self.keys.result(job_id))
        return [JobResult.from_json(raw) if raw else None for raw in pipe.execute()]

    def context(self, job_id: str) -> str | None:
        blob = self._raw.get(self.keys.context(job_id))
        return decompress_context(blob) if blob is not None else None

    def list(self, limit: int = 50, status: JobStatus | None = None) -> list[Job]:
        """The newest `limit` jobs (optionally only those with `status`), newest first."""
        ids = self.redis.zrevrange(self.keys.index, 0, -1 if status else limit - 1)
        jobs = [job for job in self.get_many(ids) if job is not None]
        if status is not None:
            jobs = [job for job in jobs if job.status is status]
        return jobs[:limit]

    def cancel(self, job_id: str) -> None:
        """Cancel a queued or running job (a running one stops at its next token)."""
        keys = [self.keys.job(job_id), self.keys.delayed, self.keys.events(job_id)]
        args = [job_id, repr(time.time()), self.config.result_ttl_s, self.config.events_maxlen]
        verdict = self._cancel(keys=keys, args=args)
        if verdict == "missing":
            raise JobNotFound(f"no job {job_id!r} (never submitted, or expired)")
        if verdict != "ok":
            raise JobStateError(f"job {job_id} is already {verdict}; nothing to cancel")

    def retry(self, job_id: str) -> None:
        """Queue a failed or cancelled job again, with a fresh count of attempts."""
        keys = [
            self.keys.job(job_id),
            self.keys.stream,
            self.keys.context(job_id),
            self.keys.events(job_id),
        ]
        verdict = self._retry(
            keys=keys, args=[job_id, self.config.result_ttl_s, self.config.events_maxlen]
        )
        if verdict == "missing":
            raise JobNotFound(f"no job {job_id!r} (never submitted, or expired)")
        if verdict == "context-expired":
            raise JobStateError(f"job {job_id}'s context has expired; submit it again")
        if verdict != "queued":
            raise JobStateError(f"job {job_id} is {verdict}; only failed or cancelled jobs retry")

    def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The newest entries of the dead-letter stream: job id and last error."""
        return [fields for _, fields in self.redis.xrevrange(self.keys.dead, count=count)]

    def live_workers(self) -> dict[str, float]:
        """Workers that sent a heartbeat within their last `LIVE_HEARTBEATS` intervals (each
        records its own interval), with the time each was last seen."""
        now, live = time.time(), {}
        for name, record in self.redis.hgetall(self.keys.workers).items():
            seen, every = (float(x) for x in record.split(":"))
            if now - seen < LIVE_HEARTBEATS * every:
                live[name] = seen
        return live
