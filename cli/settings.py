"""Everything the CLI reads from the environment, read once into one record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/nsa-assist")
CPU_BUDGET = 8_192
"""Context tokens on a CPU: the 0.5B answers within a minute or two."""
GPU_BUDGET = 65_536
"""Context tokens on a GPU (the 1.5B, YaRN past its trained 32k)."""
PROMPT_MARGIN = 32
"""Tokens kept free for the chat template's own markers and BPE merges across file borders."""


def default_budget(device: str) -> int:
    """The context budget when the user gives none."""
    return GPU_BUDGET if device == "cuda" else CPU_BUDGET


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the tool keeps its files, and which Redis to use (None: the embedded one)."""

    home: Path
    redis_url: str | None

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("NSA_HOME") or DEFAULT_HOME).expanduser()
        return cls(home=home, redis_url=os.environ.get("NSA_REDIS_URL") or None)
