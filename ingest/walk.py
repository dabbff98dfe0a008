"""Find the readable text files of a source: a folder, a git checkout, an archive, one file.

Git checkouts list their files with `git ls-files` (which honours every .gitignore,
.git/info/exclude and the user's excludes); other folders are walked with the same rules
applied by `pathspec`. Links are never followed into directories, so loops cannot hang the
walk. What is left out is kept with a reason. The order is sorted by path, so it is
deterministic.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

import pathspec

from .archive import ArchiveLimits, extract_archive, is_archive
from .context import Dropped
from .errors import SourceError
from .languages import language_name
from .source_file import SourceFile, Stamp, read_file, settled, stat_file

__all__ = ["SourceFile", "Stamp", "WalkConfig", "WalkMemory", "WalkResult", "walk_source"]

VENDORED_DIRS = frozenset(
    {
        "node_modules", "bower_components", "vendor", "dist", "build", "target", "out",
        "__pycache__", ".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", ".idea", ".vscode", ".next", ".gradle", ".eggs",
    }
)  # fmt: skip
GIT_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class WalkConfig:
    """Caps for one walk; the defaults suit repositories of tens of thousands of files."""

    max_file_bytes: int = 1_000_000
    max_files: int = 50_000
    use_git: bool = True
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)

    def __post_init__(self) -> None:
        if self.max_file_bytes <= 0 or self.max_files <= 0:
            raise ValueError(f"walk caps must be positive: {self}")


class WalkMemory(Protocol):
    """What earlier walks found of files, by path and stamp (the parse cache keeps it)."""

    def recall(self, files: Sequence[tuple[str, Stamp]]) -> list[str | None]:
        """The verdict found before on each file with this stamp (`READABLE` or why it was
        skipped), or None."""
        ...

    def remember(self, verdicts: Sequence[tuple[str, Stamp, str]]) -> None:
        """Keep the verdict on each (path, stamp)."""
        ...


@dataclass(frozen=True, slots=True)
class WalkResult:
    """The files read, in path order, and everything skipped with its reason."""

    files: tuple[SourceFile, ...]
    skipped: tuple[Dropped, ...]


def walk_source(
    source: Path, config: WalkConfig | None = None, memory: WalkMemory | None = None
) -> WalkResult:
    """Read every text file of `source` (folder, git checkout, archive or single file).

    `memory`: what earlier walks found of files by stamp; a folder's files are checked
    only when it knows nothing of them, and what this walk found is given back to it."""
    config = config or WalkConfig()
    if not source.exists():
        raise SourceError(f"source not found: {source}")
    if source.is_dir():
        return _read_folder(source, config, memory=memory)
    if is_archive(source):
        with tempfile.TemporaryDirectory(prefix="nsa-ingest-") as tmp:
            extracted = extract_archive(source, Path(tmp), config.archive)
            result = _read_folder(Path(tmp), config, use_git=False)
        return WalkResult(result.files, tuple(sorted(extracted + list(result.skipped), key=_key)))
    read = _read_one(str(source), source.name, source.resolve().parent, config, time.time_ns())
    if isinstance(read, Dropped):
        raise SourceError(f"{source}: nothing to read ({read.reason})")
    return WalkResult((read,), ())


def _read_one(
    path: str, rel: str, root: Path, config: WalkConfig, began: int
) -> SourceFile | Dropped:
    """One file stamped, read and checked."""
    stamp = stat_file(path, rel, root, config.max_file_bytes, began)
    if isinstance(stamp, Dropped):
        return stamp
    return read_file(path, rel, language_name(rel), stamp, None)[0]


def _key(item: Dropped) -> str:
    return item.path


def _read_folder(
    root: Path,
    config: WalkConfig,
    *,
    use_git: bool | None = None,
    memory: WalkMemory | None = None,
) -> WalkResult:
    """Stamp every listed file, ask `memory` about them all at once, then read and check
    those it does not know (and the readable ones it does, to decode later)."""
    began = time.time_ns()
    git_paths = _git_paths(root) if (config.use_git if use_git is None else use_git) else None
    listed, skipped = (
        _filter_listed(root, git_paths) if git_paths is not None else _walk_with_ignores(root)
    )
    stamped: list[tuple[str, str, Stamp]] = []
    for rel in sorted(listed):
        path = os.path.join(root, rel)
        stamp = stat_file(path, rel, root, config.max_file_bytes, began)
        if isinstance(stamp, Dropped):
            skipped.append(stamp)
        else:
            stamped.append((rel, path, stamp))
    known = memory.recall([(rel, stamp) for rel, _, stamp in stamped]) if memory else None
    files: list[SourceFile] = []
    found: list[tuple[str, Stamp, str]] = []
    for number, (rel, path, stamp) in enumerate(stamped):
        if len(files) >= config.max_files:
            skipped.append(Dropped(rel, f"over the cap of {config.max_files:,} files"))
            continue
        verdict = known[number] if known is not None else None
        read, found_now = read_file(path, rel, language_name(rel), stamp, verdict)
        if isinstance(read, Dropped):
            skipped.append(read)
        else:
            files.append(read)
        if verdict is None and settled(stamp):
            found.append((rel, stamp, found_now))
    if memory is not None and found:
        memory.remember(found)
    return WalkResult(tuple(files), tuple(sorted(skipped, key=_key)))


def _git_paths(root: Path) -> list[str] | None:
    """Paths `git ls-files` reports (tracked + untracked, not ignored).

    None without git, outside a work tree, or when an enclosing repository ignores `root`
    itself (then its own .gitignore files still apply through the plain walk).
    """
    git = shutil.which("git")
    if git is None:
        return None
    ignored = _run_git(git, root, "check-ignore", "-q", ".")
    if ignored is None or ignored.returncode != 1:  # 0: ignored, 128: not a work tree
        return None
    listed = _run_git(git, root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    if listed is None or listed.returncode != 0:
        return None
    names = listed.stdout.decode("utf-8", "surrogateescape").split("\0")
    return sorted({name for name in names if name})


def _run_git(git: str, root: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(
            [git, *args], cwd=root, capture_output=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _filter_listed(root: Path, paths: list[str]) -> tuple[list[str], list[Dropped]]:
    kept: list[str] = []
    skipped: list[Dropped] = []
    for rel in paths:
        vendored = _vendored_part(PurePosixPath(rel).parts[:-1])
        if vendored is not None:
            skipped.append(Dropped(rel, f"vendored or generated ({vendored}/)"))
        elif (root / rel).is_symlink() or (root / rel).is_file():
            kept.append(rel)
    return kept, skipped


def _vendored_part(parts: tuple[str, ...]) -> str | None:
    return next((part for part in parts if part in VENDORED_DIRS), None)


def _walk_with_ignores(root: Path) -> tuple[list[str], list[Dropped]]:
    """Walk without git: .gitignore files apply to their own folder and below."""
    kept: list[str] = []
    skipped: list[Dropped] = []
    specs: dict[str, pathspec.PathSpec] = {}
    exclude = root / ".git" / "info" / "exclude"
    root_lines = exclude.read_text("utf-8", "replace").splitlines() if exclude.is_file() else []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(folder).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        ignore_file = Path(folder) / ".gitignore"
        lines = (
            ignore_file.read_text("utf-8", "replace").splitlines() if ignore_file.is_file() else []
        )
        if rel_dir == "":
            lines = root_lines + lines
        if lines:
            specs[rel_dir] = pathspec.GitIgnoreSpec.from_lines(lines)
        for name in sorted(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name in VENDORED_DIRS:
                skipped.append(Dropped(rel + "/", "vendored or generated folder"))
                dirnames.remove(name)
            elif (Path(folder) / name).is_symlink():
                skipped.append(Dropped(rel + "/", "link to a folder (not followed)"))
                dirnames.remove(name)
            elif _ignored(specs, rel + "/"):
                dirnames.remove(name)
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not _ignored(specs, rel):
                kept.append(rel)
    return kept, skipped


def _ignored(specs: dict[str, pathspec.PathSpec], rel: str) -> bool:
    """Apply each .gitignore from the root down; a deeper one can re-include (`!pattern`)."""
    ignored = False
    for base, spec in specs.items():
        if base and not rel.startswith(base + "/"):
            continue
        result = spec.check_file(rel[len(base) + 1 :] if base else rel)
        if result.include is not None:
            ignored = result.include
    return ignored
