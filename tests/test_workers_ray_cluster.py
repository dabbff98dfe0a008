"""kill -9 of a whole `nsa worker` process mid-job, with two workers joined to a two-node
Ray cluster (`ray.cluster_utils.Cluster`): the other worker takes the job over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
from queue_support import FAST, private_redis

from nsa_assist.services.jobs import JobKind, JobSpec, JobStatus
from nsa_assist.services.queue import JobQueue
from nsa_assist.workers.echo import echo_answer
from nsa_assist.workers.runner import Task


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_kill_9_of_a_worker_process_on_two_nodes(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    env = {**os.environ, "NSA_HOME": str(tmp_path / "nsa-home")}
    workers: dict[int, subprocess.Popen[bytes]] = {}
    with private_redis(tmp_path / "home") as url:
        env["NSA_REDIS_URL"] = url
        queue = JobQueue(url, FAST)
        try:
            cluster.wait_for_nodes()
            for _ in range(2):
                command = [
                    sys.executable,
                    "-m",
                    "nsa_assist.cli",
                    "worker",
                    "--model",
                    "test-echo",
                    "--ray-address",
                    cluster.address,
                    "--takeover-after",
                    "2",
                ]
                process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
                workers[process.pid] = process
            wait_for(lambda: len(queue.live_workers()) == 2, 120, "two workers")
            question = "long delay-per-token=0.4"
            queue.submit(JobSpec(JobKind.ASK, "src", question, id="victim"), "ctx")
            wait_for(lambda: queue.get("victim").progress > 0, 60, "the job to start")
            first = queue.get("victim").worker
            victim = workers.pop(int(first.rsplit("-", 1)[1]))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            wait_for(lambda: queue.get("victim").status.terminal, 60, "the takeover")
            job, result = queue.get("victim"), queue.result("victim")
            events = [e for _, e in queue.redis.xrange(queue.keys.events("victim"))]
        finally:
            for process in [*workers.values()]:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
            cluster.shutdown()
    assert job.status is JobStatus.DONE and job.attempts == 2
    assert result.attempt == 2 and result.worker != first
    assert result.text == echo_answer(Task("victim", "ask", "src", "ctx", question, 512, 2))
    assert [e.get("status") for e in events].count("done") == 1
