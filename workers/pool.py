"""A fixed pool of `RunnerHost` actors, one per GPU (or CPU actors without GPUs).

The pool only knows which actors are idle: the dispatcher sends one batch to an idle actor
and waits for it, so no actor ever holds work it cannot start (backpressure lives here).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import ray
from ray.exceptions import RayActorError, RayTaskError

from .actors import RunnerHost
from .errors import EngineError
from .runner import RunnerFactory, RunSink, Task, TaskResult


class ActorStartError(EngineError):
    """The runner could not be built in its actor (unknown model, out of memory, ...)."""


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """`actors` hosts, each reserving `gpus_per_actor` GPUs and `cpus_per_actor` CPUs."""

    actors: int
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    max_restarts: int = -1  # a dead actor is restarted as often as it dies

    def __post_init__(self) -> None:
        assert self.actors >= 1, "a pool needs at least one actor"
        assert self.gpus_per_actor >= 0 and self.cpus_per_actor >= 0


@dataclass(frozen=True, slots=True)
class Finished:
    """One batch's outcome: results, or why the whole batch failed."""

    ref: ray.ObjectRef
    actor: int
    results: list[TaskResult] | None
    error: str | None = None
    actor_died: bool = False


def start_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` ('auto' or host:port), or start a local one."""
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)


def cluster_gpus() -> int:
    """GPUs in the whole Ray cluster (all nodes)."""
    return int(ray.cluster_resources().get("GPU", 0))


class ActorPool:
    """Actors hosting runners; `submit` a batch to an idle actor, `wait` for batches."""

    def __init__(self, config: PoolConfig, factory: RunnerFactory, sink: RunSink) -> None:
        remote = ray.remote(RunnerHost).options(
            num_gpus=config.gpus_per_actor,
            num_cpus=config.cpus_per_actor,
            max_restarts=config.max_restarts,
            max_task_retries=0,
            # a second thread answers `where`/probes while a batch runs; the pool never sends
            # two batches to one actor, so the runner itself is never entered twice
            max_concurrency=2,
        )
        self.config = config
        self._busy: dict[ray.ObjectRef, int] = {}
        self._probes: dict[ray.ObjectRef, int] = {}
        self.actors = [remote.remote(factory, sink) for _ in range(config.actors)]
        try:
            self.max_batch = min(ray.get([actor.max_batch.remote() for actor in self.actors]))
        except RayActorError as error:
            self.shutdown()
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise ActorStartError(f"the worker's actors failed to start: {lines[-1]}") from None

    def idle(self) -> list[int]:
        """Actors free to start a batch (not busy, not restarting after a death)."""
        self._check_probes()
        taken = set(self._busy.values()) | set(self._probes.values())
        return [i for i in range(len(self.actors)) if i not in taken]

    def _check_probes(self) -> None:
        """A restarting actor fails calls at once; it gets work again only after it answers."""
        if not self._probes:
            return
        ready, _ = ray.wait(list(self._probes), num_returns=len(self._probes), timeout=0)
        for ref in ready:
            actor = self._probes.pop(ref)
            try:
                ray.get(ref)
            except RayActorError:
                self._probe(actor)

    def _probe(self, actor: int) -> None:
        self._probes[self.actors[actor].max_batch.remote()] = actor

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def submit(self, actor: int, tasks: Sequence[Task]) -> ray.ObjectRef:
        assert actor not in self._busy.values() and 0 < len(tasks) <= self.max_batch
        ref = self.actors[actor].run.remote(list(tasks))
        self._busy[ref] = actor
        return ref

    def wait(self, timeout_s: float) -> list[Finished]:
        """Batches that finished within `timeout_s` (0: only those already done)."""
        if not self._busy:
            return []
        refs = list(self._busy)
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout_s)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return [self._outcome(ref) for ref in ready]

    def _outcome(self, ref: ray.ObjectRef) -> Finished:
        actor = self._busy.pop(ref)
        try:
            return Finished(ref, actor, ray.get(ref))
        except RayActorError as error:
            self._probe(actor)
            return Finished(ref, actor, None, f"worker died: {type(error).__name__}", True)
        except RayTaskError as error:
            return Finished(ref, actor, None, f"runner error: {error.cause!r}")

    def where(self) -> list[dict[str, object]]:
        return ray.get([actor.where.remote() for actor in self.actors])

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        self._busy.clear()
        self._probes.clear()
