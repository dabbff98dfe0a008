"""The parse cache's key of each file: a hash of its content, found from `stat` when it can be.

The content key (grammar, query and mapper version, bytes) is the real key of a parsed map. Hashing
every file costs a warm run on a large repository ~0.1 s, so, like git's index, the key is
also recorded under the file's stamp (device, inode, size, mtime, ctime, path): a file whose
stamp is unchanged is taken to hold the bytes that were hashed. An edit within the
filesystem's timestamp granularity could leave the stamp equal ("racy" in git's words), so a
file changed less than `source_file.RACY_NS` before the walk started is never recorded: it
is hashed on every run until it has settled.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .codemap import MAPPER_VERSION
from .languages import CodeLanguage
from .source_file import CHECKS_VERSION, SourceFile, Stamp, settled

if TYPE_CHECKING:
    from .parse_cache import ParseCache


def content_key(text: str, language: CodeLanguage) -> str:
    """The cache key of one file: hash of grammar, extractor version and content.

    SHA-256: with the CPU's SHA instructions it hashes ~3x faster than BLAKE2 here."""
    digest = hashlib.sha256()
    digest.update(language.grammar.encode())
    digest.update(_extractor(language))
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()[:40]


def stamp_key(path: str, stamp: Stamp, language: CodeLanguage) -> str:
    """Where a file's content key is recorded: its stamp, grammar and extractor version."""
    return _stamp_digest(path, stamp, _extractor(language))


def verdict_key(path: str, stamp: Stamp) -> str:
    """Where what a walk found of a file is recorded (source_file.py)."""
    return _stamp_digest(path, stamp, f"walk {CHECKS_VERSION}".encode())


def _stamp_digest(path: str, stamp: Stamp, salt: bytes) -> str:
    fields = (path, stamp.device, stamp.inode, stamp.size, stamp.mtime_ns, stamp.ctime_ns)
    text = "\0".join(map(str, fields))
    return hashlib.blake2b(text.encode(), digest_size=20, key=salt).hexdigest()


def content_keys(
    files: Sequence[tuple[SourceFile, CodeLanguage]], cache: ParseCache | None
) -> list[str]:
    """The content key of each file: looked up by stamp where the cache recorded it, else
    hashed (and recorded when the file has settled)."""
    if cache is None:
        return [content_key(file.text, language) for file, language in files]
    stamps = [
        stamp_key(file.path, file.stamp, language) if file.stamp is not None else None
        for file, language in files
    ]
    known = cache.get_stamps([key for key in stamps if key is not None])
    keys: list[str] = []
    record: list[tuple[str, str]] = []
    for (file, language), stamp in zip(files, stamps, strict=True):
        key = known.get(stamp) if stamp is not None else None
        if key is None:
            key = content_key(file.text, language)
            if stamp is not None and settled(file.stamp):
                record.append((stamp, key))
        keys.append(key)
    if record:
        cache.put_stamps(record)
    return keys


@functools.cache
def _extractor(language: CodeLanguage) -> bytes:
    """A short hash of what maps the language: the mapper's version and the language's query."""
    extractor = f"{MAPPER_VERSION}\n{language.query}"
    return hashlib.blake2b(extractor.encode(), digest_size=8).digest()
