"""The ranker's question-independent inputs: stored per snapshot, never stale, same ranking."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ingest_support import standin_count_tokens

from nsa_assist.ingest import pipeline
from nsa_assist.ingest.parse_cache import ParseCache, map_repository
from nsa_assist.ingest.pipeline import IngestOptions, cached_rank_inputs, ingest_repository
from nsa_assist.ingest.rank import RankWeights, rank, rank_inputs
from nsa_assist.ingest.rank_inputs import RankInputs
from nsa_assist.ingest.terms import parse_question
from nsa_assist.ingest.walk import WalkConfig, walk_source

JSON_PACKAGE = Path(json.__file__).parent
QUESTIONS = ["how are JSON strings with escape sequences decoded?", "where is indent handled"]


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(JSON_PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_inputs_survive_storing_and_rank_the_same(repository: Path, tmp_path: Path) -> None:
    walked = walk_source(repository, WalkConfig(use_git=False))
    mapped = map_repository(walked.files)
    paths = [file.path for file in walked.files]
    inputs = rank_inputs(paths, mapped.maps, RankWeights())
    cache = ParseCache(tmp_path / "cache")
    cache.put_snapshot("key", inputs.to_arrays())
    loaded = RankInputs.from_arrays(cache.get_snapshot("key"))
    assert loaded.vocabulary == inputs.vocabulary and loaded.definers.names == inputs.definers.names
    for question in QUESTIONS:
        want = rank(walked.files, mapped.definitions, parse_question(question), inputs)
        assert rank(walked.files, mapped.definitions, parse_question(question), loaded) == want


def test_second_question_loads_inputs_and_an_edit_rebuilds_them(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []

    def counting(paths, maps, weights):
        built.append(len(paths))
        return rank_inputs(paths, maps, weights)

    monkeypatch.setattr(pipeline, "rank_inputs", counting)
    options = IngestOptions(cache_dir=tmp_path / "cache", walk=WalkConfig(use_git=False))
    uncached = IngestOptions(walk=WalkConfig(use_git=False))

    def ingest(question: str, opts: IngestOptions):
        return ingest_repository(repository, question, 3000, standin_count_tokens, opts)

    first = ingest(QUESTIONS[0], options)
    second = ingest(QUESTIONS[1], options)
    assert len(built) == 1  # the second question found the stored inputs
    assert second.context == ingest(QUESTIONS[1], uncached).context
    assert first.context == ingest(QUESTIONS[0], uncached).context
    built.clear()
    decoder = repository / "decoder.py"
    decoder.write_text(decoder.read_text() + "\ndef py_scanstring_helper():\n    pass\n")
    edited = ingest(QUESTIONS[0], options)
    assert len(built) == 1  # a changed file is a new snapshot: built again, not reused
    assert edited.context == ingest(QUESTIONS[0], uncached).context


def test_only_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    cache = ParseCache(tmp_path / "cache")
    for number in range(10):
        cache.put_snapshot(f"k{number}", {"a": np.arange(number)})
    assert cache.get_snapshot("k9")["a"].tolist() == list(range(9))
    assert cache.get_snapshot("k0") is None
    assert len(list((tmp_path / "cache" / "snapshots").iterdir())) == 4


def test_cached_inputs_without_a_cache_are_built(repository: Path) -> None:
    walked = walk_source(repository, WalkConfig(use_git=False))
    mapped = map_repository(walked.files)
    inputs = cached_rank_inputs(walked.files, mapped, RankWeights(), None)
    assert (
        inputs.vocabulary
        == rank_inputs([f.path for f in walked.files], mapped.maps, RankWeights()).vocabulary
    )


def _reference_tf(path: str, file_map, wanted: frozenset[str], w: RankWeights) -> dict:
    """Weighted term counts of one mapped file, read straight off its map (no index)."""
    from collections import Counter

    from nsa_assist.ingest.paths import path_terms
    from nsa_assist.ingest.terms import doc_words, word_terms

    tf: Counter[str] = Counter()
    terms, file_stem = path_terms(path)
    for term in terms:
        if term in wanted:
            tf[term] += w.path
    if file_stem in wanted:
        tf[file_stem] += w.stem_is_term
    for word, count in file_map.words.items():
        for term in word_terms(word):
            if term in wanted:
                tf[term] += w.body * count + (w.ref if word in file_map.references else 0.0)
    for definition in file_map.definitions:
        for term in word_terms(definition.name):
            if term in wanted:
                tf[term] += w.name
        for word in doc_words(definition.doc):
            for term in word_terms(word):
                if term in wanted and word in file_map.words:
                    tf[term] += w.doc
    return tf


def test_index_scores_equal_a_scan_of_every_map(repository: Path) -> None:
    import math

    from nsa_assist.ingest.lexical import lexical_scores
    from nsa_assist.ingest.paths import is_test

    walked = walk_source(repository, WalkConfig(use_git=False))
    maps = map_repository(walked.files).maps
    w = RankWeights()
    inputs = rank_inputs([f.path for f in walked.files], maps, w)
    for text in QUESTIONS:
        question = parse_question(text)
        tfs = {f.path: _reference_tf(f.path, maps[f.path], question.terms, w) for f in walked.files}
        freq = {t: sum(t in tf for tf in tfs.values()) for t in question.terms}
        total = len(tfs)
        mean = sum(m.length for m in maps.values()) / total
        got = lexical_scores(walked.files, question, w, inputs)
        for path, tf in tfs.items():
            norm = 1 - w.length_norm + w.length_norm * maps[path].length / mean
            want = sum(
                math.log(1 + (total - freq[t] + 0.5) / (freq[t] + 0.5)) * x * 2 / (x + norm)
                for t, x in tf.items()
            )
            names = {d.name.lower() for d in maps[path].definitions}
            asked = {n.lower() for n in question.identifiers}
            want += w.exact_identifier * len(names & asked) if tf else 0.0
            want *= w.test_file if is_test(path) else 1.0
            assert math.isclose(got[path], want, rel_tol=1e-9, abs_tol=1e-12), path
        assert max(got.values()) > 0


def test_a_damaged_or_missing_snapshot_file_is_built_again(tmp_path: Path) -> None:
    cache = ParseCache(tmp_path / "cache")
    cache.put_snapshot("k", {"a": np.arange(3)})
    (tmp_path / "cache" / "snapshots" / "k.arrays").write_bytes(b"")
    assert cache.get_snapshot("k") is None
    assert cache.get_snapshot("never") is None
