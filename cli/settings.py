"""Everything the CLI reads from the environment, read once into one record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/nsa-assist")


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the tool keeps its files, and which Redis to use (None: the embedded one)."""

    home: Path
    redis_url: str | None

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("NSA_HOME") or DEFAULT_HOME).expanduser()
        return cls(home=home, redis_url=os.environ.get("NSA_REDIS_URL") or None)
