"""`nsa jobs list | show | watch | cancel | retry`, each with `--json`; and `ask_via_queue`,
which `nsa ask --queue` calls to run one question through the workers."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from .guard import user_errors_as_exit
from .settings import Settings

if TYPE_CHECKING:
    from nsa_assist.services.jobs import Job, JobResult, JobSpec
    from nsa_assist.services.queue import JobQueue

jobs_app = typer.Typer(help="Inspect and control queued jobs.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table/text.")]
JobId = Annotated[str, typer.Argument(help="The job's id.")]
FAILED_EXIT_CODE = 1
ERROR_WIDTH = 60


@contextlib.contextmanager
def open_queue(settings: Settings) -> Iterator[JobQueue]:
    """The queue at NSA_REDIS_URL, or in the embedded Redis (started for the command)."""
    from nsa_assist.services.config import QueueConfig
    from nsa_assist.services.embedded_redis import queue_redis
    from nsa_assist.services.queue import JobQueue

    with queue_redis(settings.redis_url, settings.home) as (url, _):
        queue = JobQueue(url, QueueConfig())
        try:
            yield queue
        finally:
            queue.close()


@jobs_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The newest jobs and their state."""
    from nsa_assist.services.errors import ServiceError
    from nsa_assist.services.jobs import JobStatus

    with user_errors_as_exit():
        try:
            wanted = JobStatus(status) if status else None
        except ValueError:
            choices = ", ".join(s.value for s in JobStatus)
            raise ServiceError(f"unknown status {status!r} (one of {choices})") from None
        with open_queue(Settings.from_env()) as queue:
            jobs = queue.list(limit, wanted)
    if as_json:
        print(json.dumps([job.to_dict() for job in jobs], ensure_ascii=False))
        return
    Console().print(_table(jobs))


def _table(jobs: list[Job]) -> Table:
    table = Table("id", "kind", "status", "attempts", "progress", "age", "source", "error")
    now = time.time()
    for job in jobs:
        error = (job.error or "")[:ERROR_WIDTH]
        table.add_row(
            job.id,
            job.kind.value,
            job.status.value,
            str(job.attempts),
            f"{job.progress:.0%}",
            _age(now - job.created_at),
            job.source,
            error,
        )
    return table


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@jobs_app.command("show")
def show_command(job_id: JobId, as_json: JsonFlag = False) -> None:
    """One job's record and, once done, its answer."""
    with user_errors_as_exit(), open_queue(Settings.from_env()) as queue:
        job, result = queue.get(job_id), queue.result(job_id)
    if as_json:
        payload = {"job": job.to_dict(), "result": json.loads(result.to_json()) if result else None}
        print(json.dumps(payload, ensure_ascii=False))
        return
    console = Console()
    for key, value in job.to_dict().items():
        if key.endswith("_at") and isinstance(value, float):
            value = datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")
        if value not in (None, ""):
            console.print(f"[bold]{key}[/]: {value}", highlight=False)
    if result is not None:
        console.print(f"[bold]answer[/] (attempt {result.attempt}, {result.worker}):")
        print(result.text)


@jobs_app.command("watch")
def watch_command(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Follow a job: its streamed answer on stdout, status and progress on stderr."""
    from nsa_assist.services.events import follow
    from nsa_assist.services.jobs import JobStatus

    err = Console(stderr=True)
    with user_errors_as_exit(), open_queue(Settings.from_env()) as queue:
        queue.get(job_id)
        for event in follow(queue.redis, queue.keys, job_id):
            if as_json:
                print(
                    json.dumps(
                        {
                            "id": event.id,
                            "type": event.kind,
                            "status": event.status.value if event.status else None,
                            "done": event.done,
                            "total": event.total,
                            "text": event.text,
                        }
                    ),
                    flush=True,
                )
            elif event.kind == "text":
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif event.kind == "status":
                err.print(f"[dim]{job_id}: {event.status.value}[/]")
        job = queue.get(job_id)
    if not as_json:
        sys.stdout.write("\n")
        if job.error:
            err.print(f"[red]{job.error}[/]", highlight=False)
    if job.status is not JobStatus.DONE:
        raise typer.Exit(FAILED_EXIT_CODE)


@jobs_app.command("cancel")
def cancel_command(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Cancel a queued or running job."""
    _act(job_id, "cancel", as_json)


@jobs_app.command("retry")
def retry_command(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Queue a failed or cancelled job again."""
    _act(job_id, "retry", as_json)


def _act(job_id: str, action: str, as_json: bool) -> None:
    with user_errors_as_exit(), open_queue(Settings.from_env()) as queue:
        getattr(queue, action)(job_id)
        status = queue.get(job_id).status.value
    if as_json:
        print(json.dumps({"id": job_id, "status": status}))
    else:
        Console(stderr=True).print(f"{job_id}: {status}")


def require_live_worker(queue: JobQueue) -> None:
    """Fail before any work is done when no worker would ever take the job."""
    from nsa_assist.services.errors import ServiceError

    if not queue.live_workers():
        raise ServiceError(
            "no worker is running: start `nsa worker` with the same "
            "NSA_REDIS_URL / NSA_HOME, or ask without --queue"
        )


def ask_via_queue(
    queue: JobQueue, spec: JobSpec, context: str, on_text: Callable[[str], None]
) -> JobResult:
    """Run one job through the queue, streaming its text; for `nsa ask --queue`.

    Raises a ServiceError when no worker is running or the job does not end done."""
    from nsa_assist.services.errors import ServiceError
    from nsa_assist.services.events import follow
    from nsa_assist.services.jobs import JobStatus

    require_live_worker(queue)
    job_id = queue.submit(spec, context).job_id
    for event in follow(queue.redis, queue.keys, job_id):
        if event.kind == "text":
            on_text(event.text)
    job, result = queue.get(job_id), queue.result(job_id)
    if job.status is not JobStatus.DONE or result is None:
        raise ServiceError(f"job {job_id} {job.status.value}: {job.error or 'no result'}")
    return result
