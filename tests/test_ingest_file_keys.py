"""Content keys found by `stat`: unchanged files are not hashed again, changed ones always are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ingest_support import write_tree

from nsa_assist.ingest import file_keys, source_file
from nsa_assist.ingest.parse_cache import ParseCache, map_repository
from nsa_assist.ingest.source_file import RACY_NS, settled
from nsa_assist.ingest.walk import SourceFile, Stamp, WalkConfig, walk_source

SECOND = 1_000_000_000


class CountingHash:
    """`content_key`, remembering which texts it hashed."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text, language):
        self.texts.append(text)
        return _content_key(text, language)


_content_key = file_keys.content_key


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> CountingHash:
    counting = CountingHash()
    monkeypatch.setattr(file_keys, "content_key", counting)
    return counting


def _names(cache_dir: Path, files) -> dict[str, list[str]]:
    cache = ParseCache(cache_dir)
    try:
        mapped = map_repository(files, cache)
        return {path: [d.name for d in mapped.definitions[path]] for path in mapped.definitions}
    finally:
        cache.close()


def _walk(root: Path):
    return walk_source(root, WalkConfig(use_git=False)).files


def test_settled_needs_both_times_older_than_the_walk_by_the_margin() -> None:
    now = 10_000 * SECOND
    assert settled(Stamp(1, 2, 3, now - 3 * SECOND, now - 3 * SECOND, now))
    assert not settled(Stamp(1, 2, 3, now - 3 * SECOND, now - RACY_NS // 2, now))  # ctime
    assert not settled(Stamp(1, 2, 3, now - RACY_NS // 2, now - 3 * SECOND, now))  # mtime
    assert not settled(Stamp(1, 2, 3, now + 60 * SECOND, now - 3 * SECOND, now))  # future


def test_settled_files_are_found_by_stamp_fresh_ones_hashed_again(
    tmp_path: Path, hashed: CountingHash, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tree(tmp_path / "repo", {"a.py": "def a():\n    pass\n", "b.py": "def b(): 1\n"})
    cache = tmp_path / "cache"
    _names(cache, _walk(root))
    assert len(hashed.texts) == 2
    _names(cache, _walk(root))  # written just now: racy, so hashed again, never recorded
    assert len(hashed.texts) == 4
    monkeypatch.setattr(source_file, "RACY_NS", 0)  # as if the files had been written long ago
    _names(cache, _walk(root))
    assert len(hashed.texts) == 6  # hashed once more, now recorded
    assert _names(cache, _walk(root)) == {"a.py": ["a"], "b.py": ["b"]}
    assert len(hashed.texts) == 6  # found by stamp


def test_an_edit_that_keeps_size_and_mtime_is_parsed_again(
    tmp_path: Path, hashed: CountingHash, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_file, "RACY_NS", 0)
    root = write_tree(tmp_path / "repo", {"a.py": "def old():\n    pass\n"})
    cache = tmp_path / "cache"
    assert _names(cache, _walk(root)) == {"a.py": ["old"]}
    path = root / "a.py"
    before = path.stat()
    path.write_text("def new():\n    pass\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same mtime; ctime moves
    assert path.stat().st_size == before.st_size
    assert _names(cache, _walk(root)) == {"a.py": ["new"]}


def test_a_racy_stamp_is_never_trusted(tmp_path: Path) -> None:
    """A rewrite within the filesystem's timestamp granularity can leave the whole stamp
    equal: the file changed too close to the walk to be recorded, so it is parsed again."""
    now = 10_000 * SECOND
    stamp = Stamp(1, 2, 19, now - SECOND // 100, now - SECOND // 100, now)
    before = [SourceFile("a.py", "def old():\n    pass\n", "python", stamp)]
    after = [SourceFile("a.py", "def new():\n    pass\n", "python", stamp)]
    assert _names(tmp_path, before) == {"a.py": ["old"]}
    assert _names(tmp_path, after) == {"a.py": ["new"]}


def test_a_settled_stamp_is_trusted(tmp_path: Path, hashed: CountingHash) -> None:
    now = 10_000 * SECOND
    stamp = Stamp(1, 2, 19, now - 5 * SECOND, now - 5 * SECOND, now)
    files = [SourceFile("a.py", "def old():\n    pass\n", "python", stamp)]
    assert _names(tmp_path, files) == {"a.py": ["old"]}
    assert _names(tmp_path, files) == {"a.py": ["old"]}
    assert len(hashed.texts) == 1


def test_files_without_a_stamp_are_hashed(tmp_path: Path, hashed: CountingHash) -> None:
    files = [SourceFile("a.py", "def a():\n    pass\n", "python")]
    _names(tmp_path, files)
    _names(tmp_path, files)
    assert len(hashed.texts) == 2
