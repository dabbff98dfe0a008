"""`nsa batch JOBS.jsonl`: queue many jobs, follow them with a progress bar, write results.

Without `NSA_REDIS_URL` and with no worker running, it starts the embedded Redis and a
worker in this process, and stops both when the batch is done.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .guard import USAGE_EXIT_CODE, user_errors_as_exit
from .options import AnswerTokensOption, BudgetOption
from .settings import CPU_BUDGET, GPU_BUDGET, Settings, default_budget
from .worker import CPU_SEQ_LEN, GPU_SEQ_LEN, queue_config

if TYPE_CHECKING:
    from nsa_assist.ingest.context import CountTokens
    from nsa_assist.services.batch import BatchLine, LineError
    from nsa_assist.services.queue import JobQueue

POLL_S = 0.25
TAKEOVER_S = 30.0
LOCAL_MAX_BATCH = 4
FAILED_EXIT_CODE = 1


@dataclass(frozen=True, slots=True)
class BatchOptions:
    jobs_file: Path
    out: Path | None
    wait: bool
    model: str
    device: str
    budget: int
    max_new_tokens: int


def batch_command(
    jobs_file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="One JSON job per line.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Write one result line per job here (implies --wait).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for every job to finish.")] = False,
    model: Annotated[
        str | None,
        typer.Option(help="Model whose tokenizer packs the contexts (and the local worker's)."),
    ] = None,
    budget: BudgetOption = None,
    max_new_tokens: AnswerTokensOption = 512,
) -> None:
    """Run a batch of ask/summarize jobs through the queue; re-running skips ids done.

    Relative sources are read relative to the batch file's folder."""
    from nsa_assist.services.batch import read_batch, read_done

    settings = Settings.from_env()
    err = Console(stderr=True)
    with user_errors_as_exit():
        ref, device = _model_and_device(model)
        budget = budget or default_budget(device)
        options = BatchOptions(
            jobs_file, out, wait or out is not None, ref, device, budget, max_new_tokens
        )
        lines, rejected = read_batch(jobs_file, max_new_tokens)
        previous = read_done(out) if out is not None else {}
        todo = [line for line in lines if line.spec.id not in previous]
        if previous:
            err.print(f"{len(lines) - len(todo)} job(s) already done in {out}: skipped")
        failed, late = _execute(options, todo, lines, previous, settings, err)
        rejected += late
        for error in sorted(rejected, key=lambda e: e.number):
            err.print(
                f"[bold red]error:[/] {jobs_file}:{error.number}: {error.message}",
                highlight=False,
                soft_wrap=True,
            )
    if rejected:
        raise typer.Exit(USAGE_EXIT_CODE)
    if failed:
        raise typer.Exit(FAILED_EXIT_CODE)


def _model_and_device(model: str | None) -> tuple[str, str]:
    from nsa_assist.services.runners import ECHO_MODEL

    if model == ECHO_MODEL:
        return model, "cpu"
    from .runtime import choose_model

    choice = choose_model(model)
    return choice.ref, choice.device


def _execute(
    options: BatchOptions,
    todo: list[BatchLine],
    lines: list[BatchLine],
    previous: dict[str, dict[str, object]],
    settings: Settings,
    err: Console,
) -> tuple[bool, list[LineError]]:
    """Submit, (maybe) wait with a local worker, write results. Returns (failed, rejected)."""
    from nsa_assist.ingest.pipeline import IngestOptions
    from nsa_assist.services.embedded_redis import queue_redis
    from nsa_assist.services.queue import JobQueue
    from nsa_assist.services.submit import ContextBuilder, submit_lines

    from .ingest import PARSE_CACHE_DIR

    with queue_redis(settings.redis_url, settings.home) as (url, _):
        queue = JobQueue(url, queue_config(TAKEOVER_S), patient=True)  # rides out a restart
        count_tokens, identity = _token_counter(options.model, settings)
        ingest = IngestOptions(cache_dir=settings.home / PARSE_CACHE_DIR, tokenizer=identity)
        build = ContextBuilder(
            count_tokens,
            options.budget,
            options.jobs_file.parent,
            ingest,
        )
        with err.status(f"packing {len(todo)} job(s)…"):
            report = submit_lines(queue, todo, build)
        err.print(f"queued {len(report.queued)}, already done {len(report.already_done)}")
        if not options.wait or not report.queued:
            for job_id in report.queued:
                print(job_id)
            if options.out is not None:
                _write_results(queue, options.out, _kept(lines, report.rejected), previous)
            return False, report.rejected
        needs_worker = settings.redis_url is None and not queue.live_workers() and report.queued
        if not needs_worker and not queue.live_workers():
            err.print("[yellow]no worker is running yet: jobs wait until one starts[/]")
        with _local_worker(options, url, settings) if needs_worker else contextlib.nullcontext():
            failed = _follow(queue, report.queued, err)
        if options.out is not None:
            _write_results(queue, options.out, _kept(lines, report.rejected), previous)
        return failed, report.rejected


def _kept(lines: list[BatchLine], rejected: list[LineError]) -> list[BatchLine]:
    numbers = {error.number for error in rejected}
    return [line for line in lines if line.number not in numbers]


def _token_counter(model: str, settings: Settings) -> tuple[CountTokens, str | None]:
    """(count_tokens, the tokenizer's identity for cached counts; None for the echo model)."""
    from nsa_assist.services.runners import ECHO_MODEL, count_words

    if model == ECHO_MODEL:
        return count_words, None
    from nsa_assist.services.runners import load_tokenizer

    tokenizer = load_tokenizer(model, settings.home)
    return lambda text: len(tokenizer.encode(text)), tokenizer.identity


def _local_worker(
    options: BatchOptions, url: str, settings: Settings
) -> contextlib.AbstractContextManager[object]:
    from nsa_assist.services.local_worker import LocalWorker
    from nsa_assist.services.runners import runner_factory
    from nsa_assist.workers.pool import PoolConfig

    gpu = options.device == "cuda"
    seq_len = (
        options.budget
        + options.max_new_tokens
        + (GPU_SEQ_LEN - GPU_BUDGET if gpu else CPU_SEQ_LEN - CPU_BUDGET)
    )
    factory = runner_factory(options.model, settings.home, options.device, LOCAL_MAX_BATCH, seq_len)
    if gpu:
        import torch

        pool = PoolConfig(actors=torch.cuda.device_count(), gpus_per_actor=1.0)
    else:
        pool = PoolConfig(actors=1, cpus_per_actor=1.0)
    return LocalWorker(url, queue_config(TAKEOVER_S), pool, factory)


def _follow(queue: JobQueue, job_ids: list[str], err: Console) -> bool:
    """A progress bar until every job is finished; True when any did not end done."""
    from nsa_assist.services.jobs import JobStatus

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task("jobs", total=len(job_ids))
        while True:
            jobs = queue.get_many(job_ids)
            finished = [job for job in jobs if job is None or job.status.terminal]
            bad = sum(1 for job in finished if job is None or job.status is not JobStatus.DONE)
            running = sum(1 for job in jobs if job is not None and job.status is JobStatus.RUNNING)
            label = (
                f"jobs ({running} running, {bad} failed)" if bad else f"jobs ({running} running)"
            )
            progress.update(bar, completed=len(finished), description=label)
            if len(finished) == len(job_ids):
                return bad > 0
            time.sleep(POLL_S)


def _write_results(
    queue: JobQueue, out: Path, lines: list[BatchLine], previous: dict[str, dict[str, object]]
) -> None:
    from nsa_assist.services.batch import result_record, write_results

    ids = [line.spec.id for line in lines if line.spec.id not in previous]
    jobs = dict(zip(ids, queue.get_many(ids), strict=True))
    results = dict(zip(ids, queue.results(ids), strict=True))
    records = [
        previous[line.spec.id]
        if line.spec.id in previous
        else result_record(line.spec, jobs[line.spec.id], results[line.spec.id])
        for line in lines
    ]
    write_results(out, records)
