"""The worker side of the queue: take jobs, keep them alive, store results, retry failures.

Delivery is at least once. A worker takes new entries with XREADGROUP and, every
`claim_idle_ms / 2`, takes over entries whose worker went silent with XAUTOCLAIM; a running
job is kept by a heartbeat (XCLAIM ... JUSTID resets its idle time without counting a
delivery). Every start counts an attempt in the job's record; the result is stored once per
job id and the entry acknowledged only after that.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from nsa_assist.workers.runner import Task, TaskResult

from .config import Keys, QueueConfig
from .connect import connect
from .jobs import Job, JobResult
from .queue import decompress_context, ensure_group
from .scripts import COMPLETE, FAIL, PROMOTE, START

PROMOTE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker has started: its stream entry, record, and the runner's task."""

    entry: str
    job: Job
    task: Task
    started_at: float


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Consumer:
    """One worker's handle on the queue (one consumer name in the group)."""

    def __init__(self, url: str, config: QueueConfig, name: str | None = None) -> None:
        self.config = config
        self.keys = Keys(config.prefix)
        self.name = name or default_worker_name()
        self.redis = connect(url, patient=True)
        self._raw = connect(url, patient=True, decode=False)
        ensure_group(self.redis, self.keys, config.group)
        self._start = self._raw.register_script(START)
        self._complete = self.redis.register_script(COMPLETE)
        self._fail = self.redis.register_script(FAIL)
        self._promote = self.redis.register_script(PROMOTE)
        self._next_reclaim = 0.0

    def close(self) -> None:
        self.redis.hdel(self.keys.workers, self.name)
        self.redis.close()
        self._raw.close()

    def take(self, count: int, block_ms: int) -> list[Claim]:
        """Start up to `count` jobs: retries now due, jobs of dead workers, then new ones.

        block_ms: how long to wait for a new job when none is there; 0 returns at once (Redis
        reads BLOCK 0 as "wait forever": a dispatcher filling its second idle actor then hung
        until the next submit, its running batches never collected)."""
        now = time.time()
        self._promote(
            keys=[self.keys.delayed, self.keys.stream],
            args=[repr(now), PROMOTE_LIMIT, self.keys.job_prefix],
        )
        entries: list[tuple[str, str]] = []
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.config.claim_idle_ms / 2000
            entries += self._reclaim(count)
        if len(entries) < count:
            streams = self.redis.xreadgroup(
                self.config.group,
                self.name,
                {self.keys.stream: ">"},
                count=count - len(entries),
                block=None if entries or block_ms <= 0 else block_ms,
            )
            for _, messages in streams or []:
                entries += [(entry, fields["id"]) for entry, fields in messages]
        return self._begin(entries) if entries else []

    def _reclaim(self, count: int) -> list[tuple[str, str]]:
        # Redis 6.2 replies [cursor, messages], 7.x adds deleted ids: messages is item 1.
        reply = self.redis.xautoclaim(
            self.keys.stream,
            self.config.group,
            self.name,
            min_idle_time=self.config.claim_idle_ms,
            start_id="0-0",
            count=count,
        )
        return [(entry, fields["id"]) for entry, fields in reply[1] if fields]

    def _begin(self, entries: list[tuple[str, str]]) -> list[Claim]:
        """Start every entry in one round trip (the raw client: contexts are binary)."""
        now = time.time()
        pipe = self._raw.pipeline(transaction=False)
        for entry, job_id in entries:
            keys = [
                self.keys.job(job_id),
                self.keys.stream,
                self.keys.dead,
                self.keys.events(job_id),
                self.keys.context(job_id),
            ]
            args = [
                entry,
                self.config.group,
                self.name,
                repr(now),
                self.config.max_attempts,
                self.config.result_ttl_s,
                self.config.events_maxlen,
            ]
            self._start(keys=keys, args=args, client=pipe)
        claims = []
        for (entry, job_id), reply in zip(entries, pipe.execute(), strict=True):
            if reply[0] != b"run":
                continue
            blob, flat = reply[2], [item.decode() for item in reply[3:]]
            job = Job.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
            if blob == b"" and self._has_context(flat):
                error = "the job's context expired before it ran"
                self._fail_call(entry, job_id, error, 0, 0.0, int(reply[1]))
                continue
            task = Task(
                job_id=job.id,
                kind=job.kind.value,
                source=job.source,
                context=decompress_context(blob) if blob else "",
                question=job.question,
                max_new_tokens=job.max_new_tokens,
                attempt=int(reply[1]),
            )
            claims.append(Claim(entry=entry, job=job, task=task, started_at=now))
        return claims

    @staticmethod
    def _has_context(flat: list[str]) -> bool:
        return dict(zip(flat[::2], flat[1::2], strict=True)).get("has_context") == "1"

    def heartbeat(self, claims: Sequence[Claim]) -> None:
        """Keep running jobs ours (reset their idle time) and say this worker is alive."""
        entries = [claim.entry for claim in claims]
        if entries:
            self.redis.xclaim(
                self.keys.stream, self.config.group, self.name, 0, entries, justid=True
            )
        every = self.config.heartbeat_ms / 1000
        self.redis.hset(self.keys.workers, self.name, f"{time.time()!r}:{every!r}")

    def complete(self, claim: Claim, result: TaskResult) -> str:
        """Store the result (once per job) and acknowledge; returns the job's final status."""
        return self.complete_many([(claim, result)])[0]

    def complete_many(self, done: Sequence[tuple[Claim, TaskResult]]) -> list[str]:
        """`complete` for many jobs in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for claim, result in done:
            self._complete_call(claim, result, pipe)
        return pipe.execute()

    def _complete_call(self, claim: Claim, result: TaskResult, pipe: redis.client.Pipeline) -> None:
        stored = JobResult(
            job_id=claim.job.id,
            text=result.text,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            seconds=result.seconds,
            attempt=claim.task.attempt,
            worker=self.name,
        )
        keys = [
            self.keys.job(claim.job.id),
            self.keys.stream,
            self.keys.result(claim.job.id),
            self.keys.events(claim.job.id),
            self.keys.index,
        ]
        args = [
            claim.entry,
            self.config.group,
            repr(time.time()),
            stored.to_json(),
            self.config.result_ttl_s,
            self.config.events_maxlen,
        ]
        self._complete(keys=keys, args=args, client=pipe)

    def fail(self, claim: Claim, error: str) -> str:
        """Record a failed attempt: 'retry' after a backoff, or 'failed' after the last one
        ('stale' when another worker has taken the job over meanwhile)."""
        delay = self.config.backoff_s(claim.task.attempt)
        return self._fail_call(
            claim.entry, claim.job.id, error, self.config.max_attempts, delay, claim.task.attempt
        )

    def requeue(self, claim: Claim, error: str) -> str:
        """The attempt was lost with its worker: run it again now (if attempts remain)."""
        return self._fail_call(
            claim.entry, claim.job.id, error, self.config.max_attempts, 0.0, claim.task.attempt
        )

    def _fail_call(
        self, entry: str, job_id: str, error: str, max_attempts: int, delay_s: float, attempt: int
    ) -> str:
        keys = [
            self.keys.job(job_id),
            self.keys.stream,
            self.keys.delayed,
            self.keys.dead,
            self.keys.events(job_id),
        ]
        return self._fail(
            keys=keys,
            args=[
                entry,
                self.config.group,
                repr(time.time()),
                error,
                max_attempts,
                repr(delay_s),
                self.config.result_ttl_s,
                self.config.events_maxlen,
                attempt,
            ],
        )
