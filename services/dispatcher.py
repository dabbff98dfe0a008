"""The worker's loop: take jobs from the queue for idle actors, store what comes back.

Backpressure: a batch is taken only when an actor is idle to start it, so jobs wait in
Redis (where any worker can take them), never in a worker's memory. Results that cannot
be stored while Redis is away are kept and stored when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nsa_assist.workers.pool import ActorPool, Finished, PoolConfig
from nsa_assist.workers.runner import RunnerFactory, TaskResult

from .config import QueueConfig
from .consumer import Claim, Consumer
from .events import RedisRunSink

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
REDIS_RETRY_S = 0.2


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """`poll_ms`: how long one read waits for new jobs; `drain_s`: on stop, how long
    running batches may finish before their jobs are handed back to the queue."""

    poll_ms: int = 10
    idle_poll_ms: int = 200
    drain_s: float = 30.0

    def __post_init__(self) -> None:
        assert self.poll_ms >= 0 and self.idle_poll_ms >= 0 and self.drain_s >= 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to write back for one claim: a result, or an error (and whether it was lost)."""

    claim: Claim
    result: TaskResult | None
    error: str | None = None
    lost: bool = False


class Dispatcher:
    """Feeds an `ActorPool` from a `Consumer` until `stop` is set."""

    def __init__(self, consumer: Consumer, pool: ActorPool, config: DispatchConfig) -> None:
        self.consumer = consumer
        self.pool = pool
        self.config = config
        self.completed = 0
        self._in_flight: dict[object, list[Claim]] = {}
        self._unsaved: list[Outcome] = []
        self._next_heartbeat = 0.0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except REDIS_DOWN as error:
                log.warning("Redis unavailable (%s); retrying", error)
                time.sleep(REDIS_RETRY_S)
        self.drain()

    def step(self) -> None:
        """One round: store pending outcomes, heartbeat, fill idle actors, collect batches."""
        self._save_pending()
        self._heartbeat_if_due()
        idle = self.pool.idle()
        dispatched = False
        for actor in idle:
            block = self.config.idle_poll_ms if not self._in_flight else self.config.poll_ms
            claims = self.consumer.take(self.pool.max_batch, block_ms=0 if dispatched else block)
            if not claims:
                break
            ref = self.pool.submit(actor, [claim.task for claim in claims])
            self._in_flight[ref] = claims
            dispatched = True
        busy_wait = self.consumer.config.heartbeat_ms / 1000 if not self.pool.idle() else 0.0
        for finished in self.pool.wait(timeout_s=busy_wait):
            self._collect(finished)

    def _collect(self, finished: Finished) -> None:
        claims = self._in_flight.pop(finished.ref)
        if finished.results is None:
            outcomes = [Outcome(c, None, finished.error, finished.actor_died) for c in claims]
        else:
            by_id = {result.job_id: result for result in finished.results}
            outcomes = [Outcome(c, by_id.get(c.job.id), None) for c in claims]
        self._unsaved.extend(outcomes)
        self._save_pending()

    def _save_pending(self) -> None:
        """Write every outcome back; all writes are idempotent, so after a Redis error the
        whole list is simply written again on the next step."""
        if not self._unsaved:
            return
        done = [(o.claim, o.result) for o in self._unsaved if self._succeeded(o)]
        if done:
            self.consumer.complete_many(done)
        for outcome in self._unsaved:
            if outcome.lost:
                self.consumer.requeue(outcome.claim, outcome.error or "worker lost")
            elif not self._succeeded(outcome):
                error = outcome.result.error if outcome.result else outcome.error
                self.consumer.fail(outcome.claim, error or "the runner returned no result")
        self.completed += len(done)
        self._unsaved = []

    @staticmethod
    def _succeeded(outcome: Outcome) -> bool:
        return not outcome.lost and outcome.result is not None and outcome.result.error is None

    def _heartbeat_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            claims = [claim for batch in self._in_flight.values() for claim in batch]
            self.consumer.heartbeat(claims)
            self._next_heartbeat = now + self.consumer.config.heartbeat_ms / 1000

    def drain(self) -> None:
        """Let running batches finish (up to `drain_s`), then hand the rest back."""
        deadline = time.monotonic() + self.config.drain_s
        while self._in_flight and time.monotonic() < deadline:
            self._heartbeat_if_due()
            for finished in self.pool.wait(timeout_s=0.1):
                self._collect(finished)
        for claims in self._in_flight.values():
            for claim in claims:
                self.consumer.requeue(claim, "the worker stopped before the job finished")
        self._in_flight.clear()
        self._save_pending()


def run_worker(
    url: str,
    queue: QueueConfig,
    pool: PoolConfig,
    factory: RunnerFactory,
    stop: threading.Event,
    *,
    dispatch: DispatchConfig = DispatchConfig(),
    name: str | None = None,
    on_ready: Callable[[Dispatcher], None] | None = None,
) -> int:
    """Serve jobs until `stop` is set; Ray must be started already. Returns jobs done."""
    consumer = Consumer(url, queue, name)
    actors = ActorPool(pool, factory, RedisRunSink(url, queue))
    try:
        dispatcher = Dispatcher(consumer, actors, dispatch)
        consumer.heartbeat([])
        if on_ready is not None:
            on_ready(dispatcher)
        dispatcher.run(stop)
        return dispatcher.completed
    finally:
        actors.shutdown()
        consumer.close()
