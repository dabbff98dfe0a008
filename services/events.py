"""Per-job events (status changes, progress, streamed text) in a Redis stream per job, so
`nsa jobs watch` and `nsa ask --queue` can follow a job while it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis
from redis.commands.core import Script

from .config import Keys, QueueConfig
from .connect import connect
from .jobs import JobStatus
from .scripts import EVENTS

FLUSH_S = 0.05
"""Text and progress are buffered this long before they are written (one event per token
would cost a round trip per token)."""

CANCEL_CHECK_S = 0.25


@dataclass(frozen=True, slots=True)
class Event:
    """One event: `kind` is 'status' (with `status`), 'progress' (`done`/`total`) or 'text'."""

    id: str
    kind: str
    status: JobStatus | None = None
    done: int = 0
    total: int = 0
    text: str = ""

    @classmethod
    def from_fields(cls, event_id: str, fields: dict[str, str]) -> Event:
        kind = fields["type"]
        return cls(
            id=event_id,
            kind=kind,
            status=JobStatus(fields["status"]) if kind == "status" else None,
            done=int(fields.get("done", 0)),
            total=int(fields.get("total", 0)),
            text=fields.get("text", ""),
        )


def read_events(
    client: redis.Redis, keys: Keys, job_id: str, after: str = "0-0", block_ms: int | None = None
) -> list[Event]:
    """Events of `job_id` after event id `after`; waits up to `block_ms` for the first one
    (0 or None: not at all; Redis would read BLOCK 0 as "wait forever")."""
    reply = client.xread({keys.events(job_id): after}, block=block_ms or None, count=1000)
    return [Event.from_fields(eid, fields) for _, entries in reply or [] for eid, fields in entries]


def follow(client: redis.Redis, keys: Keys, job_id: str, poll_ms: int = 500) -> Iterator[Event]:
    """Yield a job's events from the start until it reaches a terminal status."""
    after = "0-0"
    while True:
        events = read_events(client, keys, job_id, after, block_ms=poll_ms)
        for event in events:
            after = event.id
            yield event
            if event.status is not None and event.status.terminal:
                return
        if not events:
            status = client.hget(keys.job(job_id), "status")
            if status is None or JobStatus(status).terminal:
                return


@dataclass
class RedisRunSink:
    """A `RunSink` that publishes to the jobs' event streams. Made in the dispatcher, sent
    to a Ray actor, and connects lazily in that process (so it pickles as url + config).

    Text and progress are buffered and written together, one pipeline per `FLUSH_S`; a
    job's cancellation is looked up at most every `CANCEL_CHECK_S`, starting that long
    after the job was first seen (it was running when it was handed out)."""

    url: str
    config: QueueConfig
    _client: redis.Redis | None = field(default=None, init=False, repr=False)
    _text: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _progress: dict[str, tuple[int, int]] = field(default_factory=dict, init=False, repr=False)
    _last_flush: float = field(default=0.0, init=False, repr=False)
    _checked: dict[str, tuple[float, bool]] = field(default_factory=dict, init=False, repr=False)
    _script: Script | None = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict[str, object]:
        return {"url": self.url, "config": self.config}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["url"], state["config"])  # type: ignore[misc,arg-type]

    @property
    def keys(self) -> Keys:
        return Keys(self.config.prefix)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self.url, patient=True)
        return self._client

    def progress(self, job_id: str, done: int, total: int) -> None:
        self._progress[job_id] = (done, total)
        self._flush_if_due()

    def token(self, job_id: str, text: str) -> None:
        self._text.setdefault(job_id, []).append(text)
        self._flush_if_due()

    def cancelled(self, job_id: str) -> bool:
        now = time.monotonic()
        checked_at, verdict = self._checked.setdefault(job_id, (now, False))
        if now - checked_at >= CANCEL_CHECK_S:
            status = self.client.hget(self.keys.job(job_id), "status")
            verdict = status == JobStatus.CANCELLED.value
            self._checked[job_id] = (now, verdict)
        return verdict

    def flush(self) -> None:
        """End of a batch: write what is buffered and forget the batch's jobs."""
        self._write()
        self._checked.clear()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_S:
            self._write()

    def _write(self) -> None:
        self._last_flush = time.monotonic()
        if not self._text and not self._progress:
            return
        args: list[object] = [self.keys.events(""), self.keys.job_prefix, self.config.events_maxlen]
        for job_id in self._text.keys() | self._progress.keys():
            done, total = self._progress.get(job_id, (0, 0))
            args += [job_id, "".join(self._text.get(job_id, ())), done, total]
        if self._script is None:
            self._script = self.client.register_script(EVENTS)
        self._script(args=args)
        self._text.clear()
        self._progress.clear()
