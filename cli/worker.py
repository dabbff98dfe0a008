"""`nsa worker`: serve the job queue with one Ray actor per GPU (or CPU actors)."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from .guard import fail, user_errors_as_exit
from .settings import Settings

if TYPE_CHECKING:
    from nsa_assist.services.config import QueueConfig

CPU_SEQ_LEN = 8_192 + 1_024
GPU_SEQ_LEN = 65_536 + 1_024
"""Room for `nsa ask`'s default budgets plus the answer."""


def worker_command(
    model: Annotated[
        str | None,
        typer.Option(help="Registry name, .gguf file or folder; 'test-echo' runs no model."),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(help="Actors, one GPU each [default: every GPU in the Ray cluster]."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Join this Ray cluster ('auto' or host:port) instead of a local one."),
    ] = None,
    cpu_actors: Annotated[int, typer.Option(help="Actors when there is no GPU.")] = 1,
    max_batch: Annotated[int, typer.Option(help="Jobs decoded together per actor.")] = 4,
    max_seq_len: Annotated[
        int | None, typer.Option(help="Prompt + answer tokens per job [default: by device].")
    ] = None,
    takeover_after: Annotated[
        float, typer.Option(help="Seconds of silence before a worker's jobs are taken over.")
    ] = 30.0,
) -> None:
    """Take jobs from the queue and run them until interrupted (Ctrl-C stops cleanly)."""
    from nsa_assist.services.dispatcher import run_worker
    from nsa_assist.services.embedded_redis import queue_redis
    from nsa_assist.services.runners import runner_factory
    from nsa_assist.workers.pool import PoolConfig, cluster_gpus, start_ray

    settings = Settings.from_env()
    err = Console(stderr=True)
    with user_errors_as_exit():
        if (gpus is not None and gpus < 0) or cpu_actors < 1 or max_batch < 1:
            raise fail("--gpus must be >= 0; --cpu-actors and --max-batch must be >= 1")
        queue = queue_config(takeover_after)
        start_ray(ray_address)
        n_gpus = cluster_gpus() if gpus is None else gpus
        if ray_address is None and n_gpus > cluster_gpus():
            # a local cluster never grows: actors would wait for GPUs forever
            raise fail(f"--gpus {n_gpus}: this machine has {cluster_gpus()} GPU(s)")
        pool = (
            PoolConfig(actors=n_gpus, gpus_per_actor=1.0)
            if n_gpus > 0
            else PoolConfig(actors=cpu_actors, cpus_per_actor=1.0)
        )
        ref = model or _default_model(n_gpus > 0)
        seq_len = max_seq_len or (GPU_SEQ_LEN if n_gpus > 0 else CPU_SEQ_LEN)
        factory = runner_factory(
            ref, settings.home, "cuda" if n_gpus > 0 else "cpu", max_batch, seq_len
        )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        with queue_redis(settings.redis_url, settings.home) as (url, embedded):
            where = "embedded Redis " + url if embedded else url
            err.print(
                f"[bold]nsa worker[/]: {ref} on {pool.actors} "
                f"{'GPU' if n_gpus else 'CPU'} actor(s), queue at {where}"
            )
            done = run_worker(
                url, queue, pool, factory, stop, on_ready=lambda _: err.print("[green]ready[/]")
            )
        err.print(f"stopped after {done} job(s)")


def queue_config(takeover_after_s: float) -> QueueConfig:
    """The queue settings a CLI process uses; heartbeats run at 1/6 of the takeover time."""
    from nsa_assist.services.config import QueueConfig

    claim_ms = int(takeover_after_s * 1000)
    return QueueConfig(claim_idle_ms=claim_ms, heartbeat_ms=max(claim_ms // 6, 1))


def _default_model(has_gpu: bool) -> str:
    from nsa_assist.model.registry import default_model_name

    return default_model_name(has_gpu)
