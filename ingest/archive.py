"""Extract a .zip, .tar or .tar.gz upload safely into a folder we own.

Every member is checked before a byte is written: no absolute paths or `..`, no links that
point outside the target, and caps on member count, total size and compression ratio (sizes
are counted while copying, since an archive can lie about them). A violation raises
`UnsafeArchiveError`; links that stay inside are skipped, never created.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from .context import Dropped
from .errors import SourceError, UnsafeArchiveError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
COPY_CHUNK = 1 << 20
RATIO_MIN_BYTES = 1 << 20
"""Members smaller than this are not ratio-checked: small text compresses very well."""


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Caps on what one archive may expand to."""

    max_members: int = 100_000
    max_total_bytes: int = 2 << 30
    max_ratio: float = 200.0

    def __post_init__(self) -> None:
        if self.max_members <= 0 or self.max_total_bytes <= 0 or self.max_ratio <= 1:
            raise ValueError(f"archive limits must be positive (ratio > 1): {self}")


def is_archive(path: Path) -> bool:
    """True when `path`'s name says .zip, .tar, .tar.gz or .tgz."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, target: Path, limits: ArchiveLimits) -> list[Dropped]:
    """Extract `archive` into the empty folder `target`; return the members left out."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        if not zipfile.is_zipfile(archive):
            raise SourceError(f"{archive.name}: not a readable zip archive")
        with zipfile.ZipFile(archive) as zf:
            return _ZipExtractor(archive, target, limits).run(zf)
    try:
        with tarfile.open(archive, "r:*") as tf:
            return _TarExtractor(archive, target, limits).run(tf)
    except tarfile.TarError as error:
        raise SourceError(f"{archive.name}: not a readable tar archive ({error})") from None


def safe_member_path(name: str, archive: Path) -> PurePosixPath:
    """The member's path relative to the target; raises on absolute paths and `..`."""
    cleaned = name.replace("\\", "/")
    pure = PurePosixPath(cleaned)
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} has an absolute path")
    if ".." in pure.parts:
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} points outside the archive")
    return PurePosixPath(*[p for p in pure.parts if p not in ("", ".")])


def _link_stays_inside(member: PurePosixPath, link: str) -> bool:
    if link.startswith("/"):
        return False
    depth = len(member.parts) - 1
    for part in PurePosixPath(link).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return False
    return True


class _Extractor:
    """Counts members and bytes across one archive and copies streams under the caps."""

    def __init__(self, archive: Path, target: Path, limits: ArchiveLimits) -> None:
        self.archive = archive
        self.target = target
        self.limits = limits
        self.packed_bytes = max(archive.stat().st_size, 1)
        self.members = 0
        self.total = 0
        self.dropped: list[Dropped] = []

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise UnsafeArchiveError(
                f"{self.archive.name}: more than {self.limits.max_members:,} members"
            )

    def check_link(self, rel: PurePosixPath, link: str, *, from_root: bool = False) -> None:
        """A link must resolve inside the archive (from its folder, or from the root for tar
        hard links); inside ones are listed as skipped, never created."""
        anchor = PurePosixPath("member") if from_root else rel
        if not _link_stays_inside(anchor, link):
            raise UnsafeArchiveError(
                f"{self.archive.name}: link {rel} -> {link} points outside the archive"
            )
        self.dropped.append(Dropped(str(rel), "link inside the archive (not extracted)"))

    def copy(self, source: IO[bytes], rel: PurePosixPath, packed_size: int) -> None:
        destination = self.target.joinpath(*rel.parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with destination.open("wb") as out:
            while block := source.read(COPY_CHUNK):
                written += len(block)
                self.total += len(block)
                self._check_size(rel, written, packed_size)
                out.write(block)

    def _check_size(self, rel: PurePosixPath, written: int, packed_size: int) -> None:
        if self.total > self.limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{self.archive.name}: expands past {self.limits.max_total_bytes:,} bytes"
            )
        member_bomb = written > self.limits.max_ratio * max(packed_size, 1)
        whole_bomb = self.total > self.limits.max_ratio * self.packed_bytes
        if written >= RATIO_MIN_BYTES and (member_bomb or whole_bomb):
            raise UnsafeArchiveError(
                f"{self.archive.name}: {rel} expands over {self.limits.max_ratio:g}x its "
                "compressed size (a compression bomb?)"
            )


class _ZipExtractor(_Extractor):
    def run(self, zf: zipfile.ZipFile) -> list[Dropped]:
        for info in zf.infolist():
            self.count_member()
            rel = safe_member_path(info.filename, self.archive)
            mode = info.external_attr >> 16
            if info.is_dir() or not rel.parts:
                continue
            if stat.S_ISLNK(mode):
                self.check_link(rel, zf.read(info).decode("utf-8", "replace"))
                continue
            with zf.open(info) as source:
                self.copy(source, rel, info.compress_size)
        return self.dropped


class _TarExtractor(_Extractor):
    def run(self, tf: tarfile.TarFile) -> list[Dropped]:
        for member in tf:
            self.count_member()
            rel = safe_member_path(member.name, self.archive)
            if member.isdir() or not rel.parts:
                continue
            if member.issym():
                self.check_link(rel, member.linkname)
            elif member.islnk():
                self.check_link(rel, member.linkname, from_root=True)
            elif not member.isfile():
                self.dropped.append(Dropped(str(rel), "special file in the archive"))
            else:
                source = tf.extractfile(member)
                assert source is not None, "regular tar members always have data"
                self.copy(source, rel, member.size)
        return self.dropped
