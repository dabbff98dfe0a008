"""Workers on real Ray (a local cluster) against a real Redis: a 1,000-job burst through the
actor pool, and kill -9 of an actor in the middle of a job."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray
from queue_support import FAST, private_redis

from nsa_assist.services.dispatcher import DispatchConfig, Dispatcher, run_worker
from nsa_assist.services.jobs import JobKind, JobSpec, JobStatus
from nsa_assist.services.queue import JobQueue
from nsa_assist.workers.echo import EchoRunner, echo_answer
from nsa_assist.workers.pool import PoolConfig
from nsa_assist.workers.runner import Task


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with private_redis(tmp_path / "home") as url:
        yield url


class Worker:
    """`run_worker` in a thread, stopped (and joined) by the test."""

    def __init__(self, url: str, factory: Callable[[], EchoRunner], actors: int) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.dispatcher: Dispatcher | None = None
        pool = PoolConfig(actors=actors, cpus_per_actor=0.5)
        self.thread = threading.Thread(
            target=run_worker,
            args=(url, FAST, pool, factory, self.stop),
            kwargs={"dispatch": DispatchConfig(drain_s=2.0), "on_ready": self._ready},
            daemon=True,
        )
        self.thread.start()
        assert self.ready.wait(60), "the actor pool did not start"

    def _ready(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.ready.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def expected(job_id: str, context: str, question: str, attempt: int) -> str:
    task = Task(job_id, "ask", "src", context, question, 512, attempt)
    return echo_answer(task)


def test_burst_of_1000_jobs_all_done_none_twice(local_ray: None, redis_url: str) -> None:
    queue = JobQueue(redis_url, FAST)
    worker = Worker(redis_url, functools.partial(EchoRunner, max_batch=64), actors=2)
    try:
        specs = [
            (JobSpec(JobKind.ASK, "src", f"q{i}", id=f"b{i:04d}"), f"context {i}")
            for i in range(1000)
        ]
        queue.submit_many(specs)
        ids = [spec.id for spec, _ in specs]
        wait_for(lambda: worker.dispatcher.completed >= 1000, 120, "1000 jobs")
    finally:
        worker.close()
    jobs = queue.get_many(ids)
    assert all(job.status is JobStatus.DONE and job.attempts == 1 for job in jobs)
    results = queue.results(ids)
    for (spec, context), result in zip(specs, results, strict=True):
        assert result.text == expected(spec.id, context, spec.question, 1)
    assert worker.dispatcher.completed == 1000
    assert queue.redis.xlen(queue.keys.stream) == 0
    assert queue.redis.xpending(queue.keys.stream, FAST.group)["pending"] == 0


def test_kill_9_of_an_actor_mid_job_reruns_it_once(local_ray: None, redis_url: str) -> None:
    queue = JobQueue(redis_url, FAST)
    slow = functools.partial(EchoRunner, max_batch=1, token_delay_s=0.3)
    worker = Worker(redis_url, slow, actors=1)
    try:
        queue.submit(JobSpec(JobKind.ASK, "src", "slow question", id="victim"), "ctx")
        wait_for(lambda: queue.get("victim").progress > 0, 30, "the job to start")
        [where] = worker.dispatcher.pool.where()
        os.kill(where["pid"], signal.SIGKILL)
        wait_for(lambda: queue.get("victim").status.terminal, 60, "the job to finish")
        [restarted] = worker.dispatcher.pool.where()
    finally:
        worker.close()
    assert restarted["pid"] != where["pid"]
    job, result = queue.get("victim"), queue.result("victim")
    assert job.status is JobStatus.DONE and job.attempts == 2
    assert result.attempt == 2
    assert result.text == expected("victim", "ctx", "slow question", 2)
    texts = [e for _, e in queue.redis.xrange(queue.keys.events("victim")) if e["type"] == "status"]
    assert [e["status"] for e in texts].count("done") == 1
