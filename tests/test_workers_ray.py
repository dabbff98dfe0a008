"""Workers on real Ray against a real Redis: a 1,000-job burst through the actor pool,
kill -9 of an actor mid-job, and Redis restarted mid-batch."""

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
from nsa_assist.services.embedded_redis import EmbeddedRedis, EmbeddedRedisConfig
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
    worker = Worker(redis_url, functools.partial(EchoRunner, max_batch=1), actors=1)
    question = "slow delay-per-token=0.3"
    try:
        queue.submit(JobSpec(JobKind.ASK, "src", question, id="victim"), "ctx")
        wait_for(lambda: queue.get("victim").progress > 0, 30, "the job to start")
        queue.submit_many([(JobSpec(JobKind.ASK, "src", "q", id=f"w{i}"), "c") for i in range(3)])
        time.sleep(0.3)
        # backpressure: the one busy actor means nothing more is taken from the stream
        assert queue.redis.xpending(queue.keys.stream, FAST.group)["pending"] == 1
        assert {job.status for job in queue.get_many(["w0", "w1", "w2"])} == {JobStatus.QUEUED}
        [where] = worker.dispatcher.pool.where()
        os.kill(where["pid"], signal.SIGKILL)
        wait_for(lambda: worker.dispatcher.completed == 4, 60, "all four jobs")
        [restarted] = worker.dispatcher.pool.where()
    finally:
        worker.close()
    assert restarted["pid"] != where["pid"]
    job, result = queue.get("victim"), queue.result("victim")
    assert job.status is JobStatus.DONE and job.attempts == 2
    assert result.attempt == 2
    assert result.text == expected("victim", "ctx", question, 2)
    texts = [e for _, e in queue.redis.xrange(queue.keys.events("victim")) if e["type"] == "status"]
    assert [e["status"] for e in texts].count("done") == 1


def test_redis_restart_mid_batch_loses_nothing(local_ray: None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with private_redis(home) as url:
        queue = JobQueue(url, FAST, patient=True)
        worker = Worker(url, functools.partial(EchoRunner, max_batch=8), actors=2)
        question = "q delay-per-token=0.005"
        ids = [f"r{i:03d}" for i in range(120)]
        try:
            queue.submit_many([(JobSpec(JobKind.ASK, "src", question, id=i), i) for i in ids])
            wait_for(lambda: worker.dispatcher.completed >= 20, 60, "the batch to get going")
            server = EmbeddedRedis(EmbeddedRedisConfig(home=home))
            server.stop()
            time.sleep(1.0)
            with server:  # the same socket again, state reloaded from the AOF
                done_before = worker.dispatcher.completed
                assert 0 < done_before < len(ids), "the restart must land mid-batch"
                wait_for(lambda: worker.dispatcher.completed >= len(ids), 90, "every job")
                jobs = queue.get_many(ids)
                results = queue.results(ids)
        finally:
            worker.close()
    assert all(job.status is JobStatus.DONE for job in jobs)
    for job_id, job, result in zip(ids, jobs, results, strict=True):
        assert result.text == expected(job_id, job_id, question, result.attempt)
        assert result.attempt == job.attempts <= 2


def test_a_runner_that_cannot_start_is_a_clear_error(local_ray: None, redis_url: str) -> None:
    from nsa_assist.services.events import RedisRunSink
    from nsa_assist.workers.pool import ActorPool, ActorStartError

    broken = functools.partial(EchoRunner, max_batch=0)  # its constructor refuses this
    with pytest.raises(ActorStartError, match="failed to start: AssertionError"):
        ActorPool(PoolConfig(actors=1, cpus_per_actor=0.5), broken, RedisRunSink(redis_url, FAST))


def test_failed_attempt_retries_and_cancel_stops_a_running_job(
    local_ray: None, redis_url: str
) -> None:
    queue = JobQueue(redis_url, FAST)
    worker = Worker(redis_url, functools.partial(EchoRunner, max_batch=1), actors=1)
    try:
        queue.submit(JobSpec(JobKind.ASK, "src", "flaky fail-attempts=1", id="flaky"), "c")
        wait_for(lambda: queue.get("flaky").status.terminal, 30, "the flaky job")
        queue.submit(JobSpec(JobKind.ASK, "src", "slow delay-per-token=0.2", id="stop"), "c")
        wait_for(lambda: queue.get("stop").progress > 0, 30, "the slow job to start")
        queue.cancel("stop")
        wait_for(lambda: queue.redis.xlen(queue.keys.stream) == 0, 30, "the cancel to land")
        texts = [e for _, e in queue.redis.xrange(queue.keys.events("stop")) if e["type"] == "text"]
    finally:
        worker.close()
    flaky = queue.get("flaky")
    assert flaky.status is JobStatus.DONE and flaky.attempts == 2
    assert queue.result("flaky").attempt == 2
    assert queue.get("stop").status is JobStatus.CANCELLED and queue.result("stop") is None
    streamed = "".join(e["text"] for e in texts).split()
    assert 0 < len(streamed) < len(expected("stop", "c", "slow delay-per-token=0.2", 1).split())
