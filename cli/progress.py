"""One rich progress bar on stderr that any `(stage, done, total)` callback can drive."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from nsa_assist.model.progress import ProgressFn


@contextmanager
def stage_progress(console: Console, *, as_bytes: bool = True) -> Iterator[ProgressFn]:
    """Yield a callback that shows each stage as its own bar; bars vanish when done."""
    columns = [TextColumn("{task.description}"), BarColumn()]
    columns.append(DownloadColumn() if as_bytes else TextColumn("{task.completed}/{task.total}"))
    columns.append(TimeRemainingColumn())
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console, transient=True) as progress:

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total or None)
            progress.update(tasks[stage], completed=done, total=total or None)

        yield on_progress
