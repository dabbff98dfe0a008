"""One frozen config for the queue, and the Redis key names derived from its prefix."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ServiceError

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """How the queue behaves; every worker and client of one queue must share it.

    A worker that stays silent for `claim_idle_ms` loses its jobs to another worker, so
    `heartbeat_ms` must be well below it. A failed attempt is retried after
    `retry_backoff_ms * 2**(attempt-1)` (capped), up to `max_attempts` starts in all.
    """

    prefix: str = "nsa"
    group: str = "workers"
    max_attempts: int = 3
    claim_idle_ms: int = 30_000
    heartbeat_ms: int = 5_000
    retry_backoff_ms: int = 2_000
    max_backoff_ms: int = 60_000
    result_ttl_s: int = 7 * DAY_S
    context_ttl_s: int = 2 * DAY_S
    max_context_bytes: int = 64 * 1024 * 1024
    events_maxlen: int = 20_000

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in " \n{}"):
            raise ServiceError(f"bad queue prefix {self.prefix!r}")
        if self.max_attempts < 1:
            raise ServiceError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 < self.heartbeat_ms * 2 < self.claim_idle_ms:
            raise ServiceError("heartbeat_ms must be positive and under half of claim_idle_ms")
        for name in ("retry_backoff_ms", "max_backoff_ms", "result_ttl_s", "context_ttl_s"):
            if getattr(self, name) < 0:
                raise ServiceError(f"{name} must not be negative")
        if self.max_context_bytes <= 0 or self.events_maxlen <= 0:
            raise ServiceError("max_context_bytes and events_maxlen must be > 0")

    def backoff_s(self, attempt: int) -> float:
        """Delay before attempt `attempt + 1`, after attempt `attempt` failed."""
        return min(self.retry_backoff_ms * 2 ** max(attempt - 1, 0), self.max_backoff_ms) / 1000


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis key names of one queue. `job`, `result`, `context` and `events` take a job id."""

    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}:delayed"

    @property
    def index(self) -> str:
        return f"{self.prefix}:index"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def job_prefix(self) -> str:
        return f"{self.prefix}:job:"

    def job(self, job_id: str) -> str:
        return f"{self.job_prefix}{job_id}"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}:result:{job_id}"

    def context(self, job_id: str) -> str:
        return f"{self.prefix}:ctx:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:events:{job_id}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"
