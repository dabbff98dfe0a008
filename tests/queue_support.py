"""Shared by the queue tests: a private embedded Redis per test, and quick queue settings."""

from __future__ import annotations

import contextlib
import random
import string
from collections.abc import Iterator
from pathlib import Path

from nsa_assist.services.config import QueueConfig
from nsa_assist.services.embedded_redis import EmbeddedRedis, EmbeddedRedisConfig

FAST = QueueConfig(claim_idle_ms=400, heartbeat_ms=100, retry_backoff_ms=50)
"""Short timeouts so takeovers and retries happen within a test's second."""


@contextlib.contextmanager
def private_redis(home: Path) -> Iterator[str]:
    """A Redis of the test's own under `home`; checks it is gone after the last lease."""
    server = EmbeddedRedis(EmbeddedRedisConfig(home=home))
    url = server.acquire()
    try:
        yield url
    finally:
        server.release()
        assert server.running_pid() is None, "the embedded Redis outlived its last lease"


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 9))) for _ in range(words)
    )
