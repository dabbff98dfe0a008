"""What a file's path says about it: the terms of its folders and name, and whether it is a
test. Question-independent, so the ranker's stored inputs hold them (rank_inputs.py)."""

from __future__ import annotations

from .terms import stem, terms_of

TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs"})


def is_test(path: str) -> bool:
    """True for test files: in a test folder, or named test_*, *_test, *_tests."""
    parts = path.lower().split("/")
    name = parts[-1].rsplit(".", 1)[0]
    in_test_dir = any(part in TEST_DIRS for part in parts[:-1])
    return in_test_dir or name.startswith("test_") or name.endswith(("_test", "_tests"))


def path_terms(path: str) -> tuple[list[str], str]:
    """Terms of a path's folders and name, and the stem of its file name."""
    parts = path.rsplit(".", 1)[0].split("/")
    return terms_of(" ".join(parts)), stem(parts[-1].lower())
