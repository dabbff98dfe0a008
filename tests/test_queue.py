"""The queue's state machine against a real (embedded) Redis: submit, take, complete,
retry with backoff, dead letters, takeover of a silent worker, heartbeat, cancel, events."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_support import FAST, private_redis, random_text

from nsa_assist.services.consumer import Consumer
from nsa_assist.services.errors import InvalidJob, JobNotFound, JobStateError
from nsa_assist.services.events import RedisRunSink, follow
from nsa_assist.services.jobs import JobKind, JobSpec, JobStatus
from nsa_assist.services.queue import JobQueue
from nsa_assist.workers.runner import TaskResult


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with private_redis(tmp_path / "home") as url:
        yield url


def ask(job_id: str | None = None, question: str = "where is auth?", **kw) -> JobSpec:
    return JobSpec(kind=JobKind.ASK, source="repo", question=question, id=job_id, **kw)


def answer(job_id: str, text: str = "the answer") -> TaskResult:
    return TaskResult(job_id=job_id, text=text, completion_tokens=2)


def test_submit_stores_record_and_compressed_context(redis_url: str) -> None:
    queue = JobQueue(redis_url, FAST)
    rng = random.Random(1)
    context = random_text(rng, 3000) + " " + "repeated line\n" * 2000
    first = queue.submit(ask("j1"), context)
    assert first.created
    job = queue.get("j1")
    assert (job.status, job.attempts, job.kind, job.question) == (
        JobStatus.QUEUED,
        0,
        JobKind.ASK,
        "where is auth?",
    )
    assert queue.context("j1") == context
    stored = queue.redis.memory_usage(queue.keys.context("j1"))
    assert stored < len(context.encode()) * 0.7
    assert queue.redis.ttl(queue.keys.context("j1")) > 0


def test_same_id_or_idempotency_key_returns_existing_job(redis_url: str) -> None:
    queue = JobQueue(redis_url, FAST)
    assert queue.submit(ask("same"), "ctx").created
    again = queue.submit(ask("same", question="another"), "ctx")
    assert again == type(again)("same", False)
    assert queue.get("same").question == "where is auth?"
    a = queue.submit(ask(idempotency_key="k-1"))
    b = queue.submit(ask(idempotency_key="k-1"))
    assert a.created and not b.created and a.job_id == b.job_id
    assert queue.redis.xlen(queue.keys.stream) == 2


def test_bad_specs_and_oversized_context_rejected(redis_url: str) -> None:
    with pytest.raises(InvalidJob, match="question"):
        JobSpec(kind=JobKind.ASK, source="x")
    with pytest.raises(InvalidJob, match="missing source"):
        JobSpec(kind=JobKind.SUMMARIZE, source=" ")
    with pytest.raises(InvalidJob, match="bad job id"):
        ask("has space")
    queue = JobQueue(redis_url, FAST.__class__(max_context_bytes=1000))
    with pytest.raises(InvalidJob, match="over the limit"):
        queue.submit(ask("big"), "x" * 1001)
    with pytest.raises(JobNotFound):
        queue.get("big")


def test_take_complete_stores_one_result_and_acks(redis_url: str) -> None:
    queue, worker = JobQueue(redis_url, FAST), Consumer(redis_url, FAST, "w1")
    queue.submit(ask("a"), "ctx text")
    [claim] = worker.take(10, block_ms=100)
    assert claim.task.context == "ctx text" and claim.task.attempt == 1
    assert queue.get("a").status is JobStatus.RUNNING
    assert worker.complete(claim, answer("a", "first")) == "done"
    assert worker.complete(claim, answer("a", "second")) == "done"
    job, result = queue.get("a"), queue.result("a")
    assert job.status is JobStatus.DONE and job.progress == 1.0
    assert result is not None and result.text == "first" and result.attempt == 1
    assert queue.redis.xpending(queue.keys.stream, FAST.group)["pending"] == 0
    assert worker.take(10, block_ms=50) == []


def test_take_without_blocking_returns_at_once_on_an_empty_stream(redis_url: str) -> None:
    """block_ms=0 must not reach Redis as BLOCK 0, which waits until the next submit."""
    worker = Consumer(redis_url, FAST, "w1")
    worker.take(1, block_ms=1)  # the group exists, the stream is empty
    taken: list[list] = []
    reader = threading.Thread(target=lambda: taken.append(worker.take(4, block_ms=0)), daemon=True)
    reader.start()
    reader.join(5.0)
    assert taken == [[]], "take(block_ms=0) waited for a job instead of returning"


def test_failures_retry_with_backoff_then_dead_letter(redis_url: str) -> None:
    queue, worker = JobQueue(redis_url, FAST), Consumer(redis_url, FAST, "w1")
    queue.submit(ask("f"))
    seen = []
    for attempt in range(1, FAST.max_attempts + 1):
        deadline = time.monotonic() + 5
        claims = []
        while not claims and time.monotonic() < deadline:
            claims = worker.take(1, block_ms=20)
        [claim] = claims
        seen.append((claim.task.attempt, time.time()))
        verdict = worker.fail(claim, f"boom {attempt}")
        assert verdict == ("failed" if attempt == FAST.max_attempts else "retry")
        if verdict == "retry":
            job = queue.get("f")
            assert job.status is JobStatus.QUEUED and job.retry_at is not None
    assert [a for a, _ in seen] == [1, 2, 3]
    assert seen[2][1] - seen[1][1] >= FAST.backoff_s(2) * 0.9
    job = queue.get("f")
    assert (job.status, job.attempts, job.error) == (JobStatus.FAILED, 3, "boom 3")
    assert queue.dead_letters() == [{"id": "f", "error": "boom 3"}]
    queue.retry("f")
    assert queue.get("f").status is JobStatus.QUEUED and queue.get("f").attempts == 0
    [claim] = worker.take(1, block_ms=200)
    assert claim.task.attempt == 1


def test_silent_worker_loses_job_but_heartbeat_keeps_it(redis_url: str) -> None:
    queue = JobQueue(redis_url, FAST)
    alive, dead, other = (Consumer(redis_url, FAST, n) for n in ("alive", "dead", "other"))
    queue.submit(ask("kept"))
    [kept] = alive.take(1, block_ms=100)
    queue.submit(ask("lost"))
    [lost] = dead.take(1, block_ms=100)
    taken = []
    deadline = time.monotonic() + 3
    while not taken and time.monotonic() < deadline:
        alive.heartbeat([kept])
        taken = other.take(5, block_ms=50)
    assert [c.job.id for c in taken] == ["lost"]
    assert taken[0].task.attempt == 2
    assert dead.fail(lost, "zombie error") == "stale"  # the takeover's attempt is untouched
    assert queue.get("lost").status is JobStatus.RUNNING
    assert other.complete(taken[0], answer("lost", "by other")) == "done"
    assert dead.complete(lost, answer("lost", "late zombie")) == "done"
    assert queue.result("lost").text == "by other"
    assert queue.get("kept").worker == "alive"
    assert set(queue.live_workers()) == {"alive"}  # only `alive` sent heartbeats
    time.sleep(3 * FAST.heartbeat_ms / 1000)
    assert queue.live_workers() == {}


def test_job_lost_every_time_goes_to_dead_letters(redis_url: str) -> None:
    queue = JobQueue(redis_url, FAST)
    queue.submit(ask("doomed"))
    workers = [Consumer(redis_url, FAST, f"w{i}") for i in range(FAST.max_attempts + 1)]
    for worker in workers:
        deadline = time.monotonic() + 3
        while not worker.take(1, block_ms=50) and time.monotonic() < deadline:
            if queue.get("doomed").status is JobStatus.FAILED:
                break
    job = queue.get("doomed")
    assert job.status is JobStatus.FAILED and job.attempts == FAST.max_attempts
    assert "worker was lost" in job.error
    assert queue.dead_letters()[0]["id"] == "doomed"


def test_cancel_queued_and_running(redis_url: str) -> None:
    queue, worker = JobQueue(redis_url, FAST), Consumer(redis_url, FAST, "w")
    queue.submit(ask("q"))
    queue.cancel("q")
    assert worker.take(5, block_ms=50) == []
    queue.submit(ask("r"))
    [claim] = worker.take(5, block_ms=100)
    sink = RedisRunSink(redis_url, FAST)
    assert not sink.cancelled("r")
    queue.cancel("r")
    deadline = time.monotonic() + 2
    while not sink.cancelled("r"):  # looked up at most every CANCEL_CHECK_S
        assert time.monotonic() < deadline, "the sink never saw the cancellation"
        time.sleep(0.05)
    assert worker.complete(claim, answer("r")) == "cancelled"
    assert queue.result("r") is None and queue.get("r").status is JobStatus.CANCELLED
    with pytest.raises(JobStateError, match="already cancelled"):
        queue.cancel("r")
    with pytest.raises(JobNotFound):
        queue.cancel("nope")


def test_events_stream_text_and_progress_while_running(redis_url: str) -> None:
    queue, worker = JobQueue(redis_url, FAST), Consumer(redis_url, FAST, "w")
    queue.submit(ask("e"))
    [claim] = worker.take(1, block_ms=100)
    sink = RedisRunSink(redis_url, FAST)
    pieces = [f" w{i}" for i in range(50)]
    for i, piece in enumerate(pieces):
        sink.token("e", piece)
        sink.progress("e", i + 1, len(pieces))
    sink.flush()
    assert queue.get("e").progress == 1.0
    worker.complete(claim, answer("e", "".join(pieces)))
    events = list(follow(queue.redis, queue.keys, "e", poll_ms=100))
    text = "".join(e.text for e in events if e.kind == "text")
    assert text == "".join(pieces)
    statuses = [e.status for e in events if e.kind == "status"]
    assert statuses == [JobStatus.RUNNING, JobStatus.DONE]
    assert events[-1].status is JobStatus.DONE
    assert any(e.kind == "progress" and e.done == e.total == 50 for e in events)
