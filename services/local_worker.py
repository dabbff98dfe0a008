"""A worker inside the current process, for `nsa batch` when no worker is running: it starts
a local Ray instance and the dispatcher thread, and stops both on exit."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import ray

from nsa_assist.workers.pool import PoolConfig, start_ray
from nsa_assist.workers.runner import RunnerFactory

from .config import QueueConfig
from .dispatcher import DispatchConfig, Dispatcher, run_worker
from .errors import ServiceError

READY_TIMEOUT_S = 600.0
"""Loading a model into the actors can take minutes on a CPU."""


class LocalWorker:
    """`with LocalWorker(...):` serves the queue in this process for the block."""

    def __init__(
        self, url: str, queue: QueueConfig, pool: PoolConfig, factory: RunnerFactory
    ) -> None:
        self._args = (url, queue, pool, factory)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._started_ray = False
        self._thread = threading.Thread(target=self._serve, name="nsa-local-worker", daemon=True)

    def __enter__(self) -> LocalWorker:
        self._started_ray = not ray.is_initialized()
        start_ray(None)
        self._thread.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready.wait(0.1):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise ServiceError(f"the local worker failed to start: {self._failure}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._close_ray()

    def _serve(self) -> None:
        try:
            run_worker(
                *self._args,
                self._stop,
                dispatch=DispatchConfig(drain_s=5.0),
                on_ready=self._on_ready,
            )
        except Exception as error:  # reported to the waiting thread, which raises it
            self._failure = error

    def _on_ready(self, _: Dispatcher) -> None:
        self._ready.set()

    def _close_ray(self) -> None:
        if self._started_ray:
            ray.shutdown()
