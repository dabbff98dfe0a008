"""Parse results cached on disk by file content, so a second question does not parse again.

The cache wraps the pure mapper (`CodeMapper.map_file`, tree-sitter for every language): the
key is a hash of the file's bytes, its grammar, its query and the mapper's version
(file_keys.py; found by `stat` where a file has not changed), so changing any of them
invalidates old entries; the value is the `FileMap` in two marshalled parts
(stored_maps.py), in one SQLite file under the cache folder the caller passes in. The file
name carries the Python version, as marshal's does. The same file keeps what the ranker
builds per repository snapshot and token counts (token_memo.py).
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .array_file import load_arrays, save_arrays
from .codemap import CodeMapper, Definition, FileMap
from .file_keys import content_keys, verdict_key
from .languages import CodeLanguage, code_language
from .stored_maps import Decoded, StoredMap, decode, decode_definitions, encode
from .walk import SourceFile, Stamp

CACHE_FILE = f"codemap-v9-py{sys.version_info.major}{sys.version_info.minor}.sqlite"
"""Renamed whenever what is stored changes shape, so old entries are never misread."""
LOOKUP_BATCH = 500
KEEP_SNAPSHOTS = 4
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_SUFFIX = ".arrays"
KEEP_MAPS = 50_000
"""Stored maps kept, newest first (~10 KB each: ~0.5 GB at most); older ones are parsed again."""
KEEP_TOKEN_COUNTS = 200_000
"""Newest token counts kept (~60 per question; a row is ~60 bytes)."""
KEEP_STAMPS = 200_000
"""Newest file stamps kept (one per file of each repository asked about)."""
PARALLEL_MIN_FILES = 64
"""Below this many misses, starting worker processes costs more than it saves."""


class ParseCache:
    """`FileMap`s by content key, file stamps and token counts in one SQLite file
    `<cache_dir>/codemap-v9-pyXY.sqlite`; the ranker's inputs per snapshot in files under
    `<cache_dir>/snapshots/`."""

    def __init__(self, cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / CACHE_FILE
        self._snapshots = cache_dir / SNAPSHOT_DIR
        self._db = sqlite3.connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS maps "
            "(key TEXT PRIMARY KEY, defined INTEGER, definitions BLOB, words BLOB)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS stamps (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS snapshots (key TEXT PRIMARY KEY)")
        self._db.execute("CREATE TABLE IF NOT EXISTS tokens (key TEXT PRIMARY KEY, value INTEGER)")

    def get_many(self, keys: Sequence[str]) -> dict[str, StoredMap]:
        """The stored maps of those `keys` the cache holds (not decoded: stored_maps.py)."""
        query = "SELECT key, defined, definitions, words FROM maps WHERE key IN ({})"
        return {row[0]: StoredMap(*row[1:]) for row in self._select(query, keys)}

    def put_many(self, items: Iterable[tuple[str, StoredMap]]) -> None:
        """Store encoded maps (`stored_maps.encode`) by key; only the newest `KEEP_MAPS` are
        kept, so the file stops growing (freed pages are reused)."""
        self._put_newest("maps", [(key, *stored) for key, stored in items], KEEP_MAPS)

    def get_stamps(self, keys: Sequence[str]) -> dict[str, str]:
        """Content keys recorded under file stamps (see file_keys.py)."""
        return dict(self._select("SELECT key, value FROM stamps WHERE key IN ({})", keys))

    def put_stamps(self, items: Iterable[tuple[str, str]]) -> None:
        """Record content keys by stamp; only the newest `KEEP_STAMPS` are kept."""
        self._put_newest("stamps", list(items), KEEP_STAMPS)

    def recall(self, files: Sequence[tuple[str, Stamp]]) -> list[str | None]:
        """What a walk found of each (path, stamp) before (`walk.WalkMemory`)."""
        keys = [verdict_key(path, stamp) for path, stamp in files]
        found = self.get_stamps(keys)
        return [found.get(key) for key in keys]

    def remember(self, verdicts: Sequence[tuple[str, Stamp, str]]) -> None:
        """Keep what a walk found of each (path, stamp) (`walk.WalkMemory`)."""
        self.put_stamps((verdict_key(path, stamp), found) for path, stamp, found in verdicts)

    def get_snapshot(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored for a whole repository snapshot (see `MappedFiles.snapshot`),
        memory-mapped from their file."""
        try:
            return load_arrays(self._snapshots / f"{key}{SNAPSHOT_SUFFIX}")
        except (OSError, ValueError):  # never stored, evicted by another process, or foreign
            return None

    def put_snapshot(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store `arrays` for a snapshot; only the newest few snapshots are kept (each edit
        of a repository makes a new one, and old ones are never asked for again)."""
        self._snapshots.mkdir(exist_ok=True)
        save_arrays(self._snapshots / f"{key}{SNAPSHOT_SUFFIX}", arrays)
        with self._db:  # the table keeps the order they were stored in
            self._db.execute("INSERT OR REPLACE INTO snapshots VALUES (?)", (key,))
            old = self._db.execute(
                "SELECT key FROM snapshots ORDER BY rowid DESC LIMIT -1 OFFSET ?",
                (KEEP_SNAPSHOTS,),
            ).fetchall()
            self._db.executemany("DELETE FROM snapshots WHERE key = ?", old)
        for (name,) in old:
            (self._snapshots / f"{name}{SNAPSHOT_SUFFIX}").unlink(missing_ok=True)

    def get_tokens(self, key: str) -> int | None:
        """A stored token count (see `token_memo.TokenMemo`)."""
        row = self._db.execute("SELECT value FROM tokens WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_tokens(self, items: Iterable[tuple[str, int]]) -> None:
        """Store token counts by key; only the newest `KEEP_TOKEN_COUNTS` are kept."""
        self._put_newest("tokens", list(items), KEEP_TOKEN_COUNTS)

    def close(self) -> None:
        self._db.close()

    def _put_newest(self, table: str, rows: list[tuple], keep: int) -> None:
        """Insert or replace `rows` in `table`, then drop all but the newest `keep` rows (a
        replaced row counts as new)."""
        if not rows:
            return
        marks = ", ".join("?" * len(rows[0]))
        with self._db:
            self._db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
            self._db.execute(
                f"DELETE FROM {table} WHERE rowid <= (SELECT MAX(rowid) FROM {table}) - ?", (keep,)
            )

    def _select(self, query: str, keys: Sequence[str]) -> Iterator[tuple]:
        """Rows of `query` (a `WHERE key IN ({})` to fill) for `keys`, a batch at a time."""
        for start in range(0, len(keys), LOOKUP_BATCH):
            batch = list(keys[start : start + LOOKUP_BATCH])
            yield from self._db.execute(query.format(",".join("?" * len(batch))), batch)


@dataclass(frozen=True, slots=True)
class MappedFiles:
    """The maps of a repository's files, and a key of the whole snapshot."""

    maps: Mapping[str, FileMap]
    """Path -> map of every parsable file, decoded when first asked for (words and all: only
    building the ranker's inputs of a new snapshot reads them)."""
    definitions: Mapping[str, tuple[Definition, ...]]
    """Path -> definitions of each file that defines something, decoded when first asked for."""
    snapshot: str
    """Hash of every path and parsed file's content key: equal keys, equal repositories."""


def map_files(
    files: Sequence[SourceFile], cache: ParseCache | None = None, workers: int = 1
) -> dict[str, FileMap]:
    """`FileMap` of every parsable file (path -> map), from the cache where it has them."""
    return dict(map_repository(files, cache, workers).maps)


def map_repository(
    files: Sequence[SourceFile], cache: ParseCache | None = None, workers: int = 1
) -> MappedFiles:
    """The maps of `files` (lazily decoded where they come from the cache) and the snapshot
    key. Misses are parsed in `workers` processes when there are many, then stored."""
    parsable = [(file, lang) for file in files if (lang := code_language(file.path)) is not None]
    paths = [file.path for file, _ in parsable]
    keys = dict(zip(paths, content_keys(parsable, cache), strict=True))
    stored = cache.get_many(list(dict.fromkeys(keys.values()))) if cache is not None else {}
    # files with the same content share a key: each is mapped once (and only the texts of
    # misses are touched: a file may not even have been read yet)
    misses: dict[str, tuple[str, CodeLanguage]] = {}
    for file, lang in parsable:
        key = keys[file.path]
        if key not in stored and key not in misses:
            misses[key] = (file.text, lang)
    parsed, encoded = _parse(misses, workers, cache is not None)
    if cache is not None and encoded:
        cache.put_many(encoded.items())
    maps: dict[str, FileMap | StoredMap] = {**stored, **parsed}
    definitions: dict[str, tuple[Definition, ...] | StoredMap] = {**stored}
    definitions.update((key, file_map.definitions) for key, file_map in parsed.items())
    defining = {path: key for path, key in keys.items() if _defines(definitions[key])}
    snapshot = hashlib.blake2b(digest_size=20)
    for file in files:
        snapshot.update(f"{file.path}\0{keys.get(file.path, '')}\n".encode())
    return MappedFiles(
        Decoded(keys, maps, decode),
        Decoded(defining, definitions, decode_definitions),
        snapshot.hexdigest(),
    )


def _defines(value: tuple[Definition, ...] | StoredMap) -> bool:
    return value.defined > 0 if isinstance(value, StoredMap) else bool(value)


def _parse(
    misses: dict[str, tuple[str, CodeLanguage]], workers: int, encoded: bool
) -> tuple[dict[str, FileMap], dict[str, StoredMap]]:
    """Maps of `misses` (content key -> text, language), and their stored form when
    `encoded` (the cache stores it; workers send it back anyway)."""
    if workers > 1 and len(misses) >= PARALLEL_MIN_FILES:
        parsed: dict[str, FileMap] = {}
        stored: dict[str, StoredMap] = {}
        # decoded as they arrive: the main process would otherwise idle until the last one
        found = _parse_in_processes(list(misses.values()), workers)
        for key, value in zip(misses, found, strict=True):
            stored[key] = value
            parsed[key] = decode(value)
        return parsed, stored
    mapper = CodeMapper()
    parsed = {key: mapper.map_file(text, lang) for key, (text, lang) in misses.items()}
    return parsed, ({key: encode(m) for key, m in parsed.items()} if encoded else {})


def _parse_in_processes(jobs: list[tuple[str, CodeLanguage]], workers: int) -> Iterator[StoredMap]:
    """Encoded maps of `jobs` in order, as `workers` processes finish them.

    Workers send maps back encoded: pickling the objects costs seconds on a large repo."""
    # spawn, not fork: the caller may hold threads (a loaded model) that fork would copy
    context = multiprocessing.get_context("spawn")
    chunk = max(1, len(jobs) // (workers * 8))
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(_map_one, jobs, chunksize=chunk)


@functools.cache
def _worker_mapper() -> CodeMapper:
    """One mapper per worker process, made on first use (compiling queries is not free)."""
    return CodeMapper()


def _map_one(job: tuple[str, CodeLanguage]) -> StoredMap:
    text, language = job
    return encode(_worker_mapper().map_file(text, language))
