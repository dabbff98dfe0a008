"""Parse results cached on disk by file content, so a second question does not parse again.

The cache wraps the pure mappers (`map_python` for Python, `CodeMapper.map_file` for the
rest): the key is a hash of the file's bytes, its grammar and the extractor's version (the
query text, or the Python scanner's version), so changing either invalidates old entries;
the value is the
`FileMap`'s plain-data form serialized with `marshal` (several times faster to load than
JSON, which matters when a warm run reads thousands), in one SQLite file under the cache
folder the caller passes in. The file name carries the Python version, as marshal's does.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import multiprocessing
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .codemap import CodeMapper, FileMap
from .languages import PYTHON, CodeLanguage, code_language
from .pyscan import SCANNER_VERSION, map_python
from .walk import SourceFile

CACHE_FILE = f"codemap-v7-py{sys.version_info.major}{sys.version_info.minor}.sqlite"
"""Renamed whenever `FileMap` changes shape, so old entries are never misread."""
LOOKUP_BATCH = 500
KEEP_SNAPSHOTS = 4
KEEP_TOKEN_COUNTS = 200_000
"""Newest token counts kept (~60 per question; a row is ~60 bytes)."""
PARALLEL_MIN_FILES = 64
"""Below this many misses, starting worker processes costs more than it saves."""


def content_key(text: str, language: CodeLanguage) -> str:
    """The cache key of one file: hash of grammar, extractor version and content.

    SHA-256: with the CPU's SHA instructions it hashes ~3x faster than BLAKE2 here, and a
    warm run hashes every file (80 MB on a large repository)."""
    digest = hashlib.sha256()
    digest.update(language.grammar.encode())
    extractor = SCANNER_VERSION if language == PYTHON else language.query
    digest.update(hashlib.blake2b(extractor.encode(), digest_size=8).digest())
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()[:40]


class ParseCache:
    """`FileMap`s by content key in `<cache_dir>/codemap-v7-pyXY.sqlite`."""

    def __init__(self, cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / CACHE_FILE
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS maps (key TEXT PRIMARY KEY, value BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS snapshots (key TEXT PRIMARY KEY, value BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS tokens (key TEXT PRIMARY KEY, value INTEGER)")

    def get_many(self, keys: Sequence[str]) -> dict[str, FileMap]:
        found: dict[str, FileMap] = {}
        for start in range(0, len(keys), LOOKUP_BATCH):
            batch = list(keys[start : start + LOOKUP_BATCH])
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(f"SELECT key, value FROM maps WHERE key IN ({marks})", batch)
            found.update((key, decode(value)) for key, value in rows)
        return found

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store encoded maps (`encode`) by key."""
        rows = list(items)
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO maps VALUES (?, ?)", rows)

    def get_snapshot(self, key: str) -> bytes | None:
        """What was stored for a whole repository snapshot (see `MappedFiles.snapshot`)."""
        row = self._db.execute("SELECT value FROM snapshots WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_snapshot(self, key: str, value: bytes) -> None:
        """Store `value` for a snapshot; only the newest few snapshots are kept (each edit of
        a repository makes a new one, and old ones are never asked for again)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (key, value))
            self._db.execute(
                "DELETE FROM snapshots WHERE rowid NOT IN "
                "(SELECT rowid FROM snapshots ORDER BY rowid DESC LIMIT ?)",
                (KEEP_SNAPSHOTS,),
            )

    def get_tokens(self, key: str) -> int | None:
        """A stored token count (see `token_memo.TokenMemo`)."""
        row = self._db.execute("SELECT value FROM tokens WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_tokens(self, items: Iterable[tuple[str, int]]) -> None:
        """Store token counts by key; only the newest `KEEP_TOKEN_COUNTS` are kept."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?)", list(items))
            self._db.execute(
                "DELETE FROM tokens WHERE rowid <= (SELECT MAX(rowid) FROM tokens) - ?",
                (KEEP_TOKEN_COUNTS,),
            )

    def close(self) -> None:
        self._db.close()


def encode(file_map: FileMap) -> bytes:
    """A `FileMap` as bytes (marshal: far cheaper to load than pickle or JSON)."""
    return marshal.dumps(file_map.to_json())


def decode(data: bytes) -> FileMap:
    return FileMap.from_json(marshal.loads(data))


@dataclass(frozen=True, slots=True)
class MappedFiles:
    """The maps of a repository's files, and a key of the whole snapshot."""

    maps: dict[str, FileMap]
    """Path -> map of every parsable file."""
    snapshot: str
    """Hash of every path and parsed file's content key: equal keys, equal repositories."""


def map_files(
    files: Sequence[SourceFile], cache: ParseCache | None = None, workers: int = 1
) -> dict[str, FileMap]:
    """`FileMap` of every parsable file (path -> map), from the cache where it has them."""
    return map_repository(files, cache, workers).maps


def map_repository(
    files: Sequence[SourceFile], cache: ParseCache | None = None, workers: int = 1
) -> MappedFiles:
    """`map_files` and the snapshot key.

    Misses are parsed in `workers` processes when there are many, then stored.
    """
    todo: list[tuple[str, SourceFile, CodeLanguage]] = []
    for file in files:
        language = code_language(file.path)
        if language is not None:
            todo.append((content_key(file.text, language), file, language))
    cached = cache.get_many([key for key, _, _ in todo]) if cache is not None else {}
    # files with the same content share a key: each is mapped once
    misses = {key: (file.text, lang) for key, file, lang in todo if key not in cached}
    if workers > 1 and len(misses) >= PARALLEL_MIN_FILES:
        encoded: dict[str, bytes] = {}
        parsed = {}
        # decoded as they arrive: the main process would otherwise idle until the last one
        found = _parse_in_processes(list(misses.values()), workers)
        for key, data in zip(misses, found, strict=True):
            encoded[key] = data
            parsed[key] = decode(data)
    else:
        mapper = CodeMapper()
        parsed = {key: map_source(mapper, text, lang) for key, (text, lang) in misses.items()}
        encoded = {key: encode(m) for key, m in parsed.items()} if cache is not None else {}
    if cache is not None and parsed:
        cache.put_many(encoded.items())
    maps = cached | parsed
    snapshot = hashlib.blake2b(digest_size=20)
    keys = {file.path: key for key, file, _ in todo}
    for file in files:
        snapshot.update(f"{file.path}\0{keys.get(file.path, '')}\n".encode())
    mapped = {file.path: maps[key] for key, file, _ in todo}
    return MappedFiles(mapped, snapshot.hexdigest())


def _parse_in_processes(jobs: list[tuple[str, CodeLanguage]], workers: int) -> Iterator[bytes]:
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


def _map_one(job: tuple[str, CodeLanguage]) -> bytes:
    text, language = job
    return encode(map_source(_worker_mapper(), text, language))


def map_source(mapper: CodeMapper, text: str, language: CodeLanguage) -> FileMap:
    """The `FileMap` of one file: Python by the line scanner, the rest by tree-sitter."""
    if language == PYTHON:
        return map_python(text)
    return mapper.map_file(text, language)
