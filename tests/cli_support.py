"""Run the real `nsa` command in a subprocess, with stdout and stderr kept apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from model_fixtures import shared_home

TEST_MODEL = "smollm2-135m-instruct"


def default_home() -> Path:
    """The model cache the tests share with the user (a model is fetched at most once)."""
    return shared_home()


def run_nsa(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NSA_HOME": str(home)}
    env.pop("NSA_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "nsa_assist.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
