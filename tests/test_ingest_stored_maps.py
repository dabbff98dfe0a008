"""Maps stored in two parts and decoded on first access: same maps, same contexts, less work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ingest_support import standin_count_tokens

from nsa_assist.ingest import parse_cache
from nsa_assist.ingest.codemap import CodeMapper
from nsa_assist.ingest.languages import code_language
from nsa_assist.ingest.pack import PackConfig, pack_repository
from nsa_assist.ingest.parse_cache import ParseCache, map_repository
from nsa_assist.ingest.pipeline import IngestOptions, cached_rank_inputs, ingest_repository
from nsa_assist.ingest.rank import RankWeights, rank
from nsa_assist.ingest.stored_maps import decode, decode_definitions, encode
from nsa_assist.ingest.terms import parse_question
from nsa_assist.ingest.walk import WalkConfig, walk_source

JSON_PACKAGE = Path(json.__file__).parent
QUESTION = "how are JSON strings with escape sequences decoded?"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(JSON_PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_both_parts_round_trip() -> None:
    text = (JSON_PACKAGE / "decoder.py").read_text()
    file_map = CodeMapper().map_file(text, code_language("x.py"))
    stored = encode(file_map)
    assert decode(stored) == file_map and stored.defined == len(file_map.definitions)
    assert decode_definitions(stored) == file_map.definitions


def test_a_second_question_decodes_no_words_and_few_definitions(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []

    def counting(kind, decoder):
        def decode_one(stored):
            decoded.append(kind)
            return decoder(stored)

        return decode_one

    monkeypatch.setattr(parse_cache, "decode", counting("map", decode))
    monkeypatch.setattr(parse_cache, "decode_definitions", counting("defs", decode_definitions))
    options = IngestOptions(cache_dir=tmp_path / "cache", walk=WalkConfig(use_git=False))
    first = ingest_repository(repository, QUESTION, 3000, standin_count_tokens, options)
    decoded.clear()
    second = ingest_repository(
        repository, "where is indent handled", 3000, standin_count_tokens, options
    )
    assert "map" not in decoded  # the snapshot's rank inputs were stored: no words needed
    assert 0 < decoded.count("defs") <= len(list(repository.glob("*.py")))
    plain = IngestOptions(walk=WalkConfig(use_git=False))
    assert (
        first.context
        == ingest_repository(repository, QUESTION, 3000, standin_count_tokens, plain).context
    )
    assert (
        second.context
        == ingest_repository(
            repository, "where is indent handled", 3000, standin_count_tokens, plain
        ).context
    )


@pytest.mark.parametrize("budget", [400, 3000, 20_000])
def test_lazy_definitions_pack_as_eager_ones(repository: Path, tmp_path: Path, budget: int) -> None:
    walked = walk_source(repository, WalkConfig(use_git=False))
    cache = ParseCache(tmp_path / "cache")
    map_repository(walked.files, cache)  # fills the cache: the next mapping decodes lazily
    mapped = map_repository(walked.files, cache)
    inputs = cached_rank_inputs(walked.files, mapped, RankWeights(), cache)
    eager = {
        path: decode_definitions(encode(m)) for path, m in mapped.maps.items() if m.definitions
    }
    question = parse_question(QUESTION)
    config = PackConfig(budget)
    lazy_ranking = rank(walked.files, mapped.definitions, question, inputs)
    eager_ranking = rank(walked.files, eager, question, inputs)
    assert lazy_ranking == eager_ranking
    lazy = pack_repository(walked, mapped.definitions, lazy_ranking, config, standin_count_tokens)
    assert lazy == pack_repository(walked, eager, eager_ranking, config, standin_count_tokens)
    cache.close()


def test_only_the_newest_maps_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The maps table is bounded: past `KEEP_MAPS` the oldest maps go (and are parsed again)."""
    monkeypatch.setattr(parse_cache, "KEEP_MAPS", 3)
    stored = encode(CodeMapper().map_file("def f():\n    pass\n", code_language("a.py")))
    cache = ParseCache(tmp_path / "cache")
    for i in range(5):
        cache.put_many([(f"key{i}", stored)])
    assert sorted(cache.get_many([f"key{i}" for i in range(5)])) == ["key2", "key3", "key4"]
    cache.put_many([("key0", stored)])  # stored again: the newest now
    assert sorted(cache.get_many([f"key{i}" for i in range(5)])) == ["key0", "key3", "key4"]
