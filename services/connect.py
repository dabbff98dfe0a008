"""Redis clients for the queue. Workers use a patient client that rides out a Redis restart;
commands a person is waiting on use a quick one that fails fast with a clear message."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .errors import RedisUnavailable

PATIENT_RETRIES = 40
"""With backoff capped at 0.5 s this waits about 20 s for Redis to come back."""

QUICK_RETRIES = 2


def connect(url: str, *, patient: bool, decode: bool = True) -> redis.Redis:
    """A client for `url` (redis://, rediss:// or unix://) that retries lost connections."""
    retries = PATIENT_RETRIES if patient else QUICK_RETRIES
    try:
        return redis.Redis.from_url(
            url,
            decode_responses=decode,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=30,
        )
    except ValueError as error:
        raise RedisUnavailable(f"bad Redis URL {url!r}: {error}") from None


def check_reachable(client: redis.Redis, url: str) -> None:
    """Raise RedisUnavailable (a user error) when nothing answers at `url`."""
    try:
        client.ping()
    except (RedisConnectionError, RedisTimeoutError) as error:
        raise RedisUnavailable(f"cannot reach Redis at {url}: {error}") from None
