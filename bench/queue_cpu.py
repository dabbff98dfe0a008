"""Queue overhead: submit-to-start latency and jobs/s through Redis Streams, with the
deterministic `EchoRunner` stand-in (no model), so only the queue is measured.

Two paths, each with the worker in its own process and a private embedded Redis:
- `queue`: one consumer loop running the stand-in in-process (the queue alone);
- `ray`: the real worker stack, dispatcher + Ray actor pool (2 CPU actors).
For each: a paced run (jobs submitted one by one at --rate) for latency, and a burst
(--burst jobs in pipelines) for throughput. Prints a table, writes
bench/results/queue-cpu.json.

    python bench/queue_cpu.py [--rate 200] [--seconds 5] [--burst 5000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from nsa_assist.services.config import QueueConfig
from nsa_assist.services.consumer import Consumer
from nsa_assist.services.embedded_redis import EmbeddedRedis, EmbeddedRedisConfig
from nsa_assist.services.events import RedisRunSink
from nsa_assist.services.jobs import JobKind, JobSpec, JobStatus
from nsa_assist.services.queue import JobQueue
from nsa_assist.workers.echo import EchoRunner

RESULTS = Path(__file__).parent / "results" / "queue-cpu.json"
CONFIG = QueueConfig()
MAX_BATCH = 64
RAY_ACTORS = 2


def queue_worker(url: str, stop: Any, ready: Any) -> None:
    """The queue alone: take, run the stand-in in this process, store."""
    consumer = Consumer(url, CONFIG, "bench-queue")
    runner, sink = EchoRunner(max_batch=MAX_BATCH), RedisRunSink(url, CONFIG)
    ready.set()
    while not stop.is_set():
        claims = consumer.take(MAX_BATCH, block_ms=50)
        if claims:
            results = runner.run([claim.task for claim in claims], sink)
            consumer.complete_many(list(zip(claims, results, strict=True)))
    consumer.close()


def ray_worker(url: str, stop: Any, ready: Any) -> None:
    """The full stack: dispatcher feeding a pool of Ray actors."""
    import functools

    from nsa_assist.services.dispatcher import run_worker
    from nsa_assist.workers.pool import PoolConfig, start_ray

    start_ray(None, num_cpus=RAY_ACTORS)
    event = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), event.set()), daemon=True).start()
    pool = PoolConfig(actors=RAY_ACTORS, cpus_per_actor=1.0)
    factory = functools.partial(EchoRunner, max_batch=MAX_BATCH)
    run_worker(url, CONFIG, pool, factory, event, on_ready=lambda _: ready.set())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_done(queue: JobQueue, ids: list[str], timeout_s: float = 300.0) -> list:
    """Poll cheaply (one EXISTS over the result keys) so the wait does not load Redis."""
    keys = [queue.keys.result(job_id) for job_id in ids]
    deadline = time.monotonic() + timeout_s
    while queue.redis.exists(*keys) < len(keys):
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.1)
    jobs = queue.get_many(ids)
    assert all(job is not None and job.status is JobStatus.DONE for job in jobs)
    return jobs


def paced(queue: JobQueue, prefix: str, rate: float, seconds: float) -> dict[str, Any]:
    """Submit one job every 1/rate s; latency = worker's start time - submit time."""
    ids, start = [], time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        job_id = f"{prefix}-p{i}"
        queue.submit(JobSpec(JobKind.ASK, "bench", f"q{i}", id=job_id), f"context {i}")
        ids.append(job_id)
    jobs = wait_done(queue, ids)
    latency_ms = [(job.started_at - job.created_at) * 1000 for job in jobs]
    return {
        "jobs": len(ids),
        "rate_per_s": rate,
        "latency_ms_p50": round(statistics.median(latency_ms), 2),
        "latency_ms_p99": round(percentile(latency_ms, 0.99), 2),
        "latency_ms_max": round(max(latency_ms), 2),
    }


def burst(queue: JobQueue, prefix: str, count: int) -> dict[str, Any]:
    """Submit `count` jobs at once; jobs/s from the first submit to the last finish."""
    specs = [
        (JobSpec(JobKind.ASK, "bench", f"q{i}", id=f"{prefix}-b{i}"), f"context {i}")
        for i in range(count)
    ]
    started = time.time()
    queue.submit_many(specs)
    submitted = time.time()
    jobs = wait_done(queue, [spec.id for spec, _ in specs])
    finished = max(job.finished_at for job in jobs)
    results = queue.results([spec.id for spec, _ in specs])
    assert all(result is not None and result.attempt == 1 for result in results)
    return {
        "jobs": count,
        "submit_per_s": round(count / (submitted - started)),
        "jobs_per_s": round(count / (finished - started)),
        "seconds": round(finished - started, 2),
    }


def measure(path: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    target = queue_worker if path == "queue" else ray_worker
    worker = ctx.Process(target=target, args=(url, stop, ready))
    worker.start()
    assert ready.wait(180), f"{path} worker did not start"
    queue = JobQueue(url, CONFIG)
    try:
        paced(queue, f"{path}-warm", args.rate, 0.5)
        return {
            "paced": paced(queue, path, args.rate, args.seconds),
            "burst": burst(queue, path, args.burst),
        }
    finally:
        stop.set()
        worker.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="paced jobs per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the paced run")
    parser.add_argument("--burst", type=int, default=5000, help="jobs in the burst")
    parser.add_argument("--paths", default="queue,ray", help="which of queue,ray to run")
    args = parser.parse_args()
    out: dict[str, Any] = {
        "command": "python " + shlex.join(sys.argv),
        "device": f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "versions": {
            "python": platform.python_version(),
            "redis-py": version("redis"),
            "ray": version("ray"),
        },
        "runner": "EchoRunner (deterministic stand-in, no model)",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "results": {},
    }
    with (
        tempfile.TemporaryDirectory() as home,
        EmbeddedRedis(EmbeddedRedisConfig(home=Path(home))) as url,
    ):
        out["versions"]["redis-server"] = JobQueue(url, CONFIG).redis.info()["redis_version"]
        for path in args.paths.split(","):
            out["results"][path] = measure(path, url, args)
    print(f"{'path':6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'burst jobs/s':>13}")
    for path, numbers in out["results"].items():
        p, b = numbers["paced"], numbers["burst"]
        print(
            f"{path:6} {p['latency_ms_p50']:8.2f} {p['latency_ms_p99']:8.2f} "
            f"{p['latency_ms_max']:8.2f} {b['jobs_per_s']:13d}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
