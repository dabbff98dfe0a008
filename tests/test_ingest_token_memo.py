"""Token counts kept in the parse cache: reused for the same text and tokenizer, never else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ingest_support import standin_count_tokens

from nsa_assist.ingest.parse_cache import ParseCache
from nsa_assist.ingest.pipeline import IngestOptions, ingest_repository
from nsa_assist.ingest.token_memo import TokenMemo
from nsa_assist.ingest.walk import WalkConfig

QUESTION = "how are JSON strings with escape sequences decoded?"


class Counting:
    """The stand-in counter, remembering how many texts it was asked to count."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        return standin_count_tokens(text)


def test_second_run_counts_nothing_and_packs_the_same(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(Path(json.__file__).parent, repo, ignore=shutil.ignore_patterns("__pycache__"))
    walk = WalkConfig(use_git=False)
    cached = IngestOptions(cache_dir=tmp_path / "cache", walk=walk, tokenizer="stand-in")
    counting = Counting()
    first = ingest_repository(repo, QUESTION, 3000, counting, cached)
    assert counting.calls > 5
    counting.calls = 0
    second = ingest_repository(repo, QUESTION, 3000, counting, cached)
    assert counting.calls == 0
    plain = ingest_repository(repo, QUESTION, 3000, standin_count_tokens, IngestOptions(walk=walk))
    assert first.context == second.context == plain.context
    # an edit that keeps the length: its text is counted again, never served from the cache
    decoder = repo / "decoder.py"
    text = decoder.read_text()
    decoder.write_text(text.replace("scanstring", "scanstrinq"))
    edited = ingest_repository(repo, QUESTION, 3000, counting, cached)
    assert counting.calls > 0
    again = ingest_repository(repo, QUESTION, 3000, standin_count_tokens, IngestOptions(walk=walk))
    assert edited.context == again.context


def test_counts_are_kept_per_tokenizer(tmp_path: Path) -> None:
    cache = ParseCache(tmp_path / "cache")
    one = TokenMemo(len, "chars", cache)
    assert one("hello world") == 11
    one.flush()
    other = TokenMemo(standin_count_tokens, "words", cache)
    assert other("hello world") == 2  # not the other tokenizer's 11
    assert TokenMemo(standin_count_tokens, "chars", cache)("hello world") == 11  # stored
    cache.close()
