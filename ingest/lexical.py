"""How well each file's words match a question: a BM25-style score over weighted fields.

A file scores on the question's terms in its path, definition names, docstrings, the names
it uses and its whole text (rare terms count more, repeats saturate, long files are
discounted). Only the few terms a question asks for are counted, at ranking time: a word
or name can hold a term only if it contains the term as text, so a substring test picks
the few to split and stem, and a file's words meet them in one set intersection.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .codemap import FileMap
from .rank_inputs import RankInputs, carriers
from .terms import Question, doc_words, stem, terms_of, word_terms
from .walk import SourceFile

if TYPE_CHECKING:
    from .rank import RankWeights

TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs"})
TEXT_CHARS_PER_WORD = 6.0
"""Prose length in words, estimated from characters (text files have no parsed map)."""


def lexical_scores(
    files: Sequence[SourceFile],
    maps: Mapping[str, FileMap],
    question: Question,
    weights: RankWeights,
    inputs: RankInputs,
) -> dict[str, float]:
    """BM25-style score of each file on the question's terms (0 for an empty question)."""
    if question.empty:
        return {file.path: 0.0 for file in files}
    field_tf: dict[str, dict[str, float]] = {}
    doc_freq: dict[str, int] = defaultdict(int)
    carriers = _term_carriers(inputs, question.terms)
    for file in files:
        tf = _weighted_terms(file, maps.get(file.path), question.terms, carriers, weights)
        field_tf[file.path] = tf
        for term in tf:
            doc_freq[term] += 1
    total = len(files)
    idf = {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for t, n in doc_freq.items()}
    lengths = {file.path: _length(file, maps.get(file.path), weights) for file in files}
    mean_length = sum(lengths.values()) / max(total, 1) or 1.0
    asked = {name.lower() for name in question.identifiers}
    scores: dict[str, float] = {}
    for file in files:
        tf = field_tf[file.path]
        norm = weights.saturation * (
            1 - weights.length_norm + weights.length_norm * lengths[file.path] / mean_length
        )
        score = sum(idf[t] * x * (1 + weights.saturation) / (x + norm) for t, x in tf.items())
        file_map = maps.get(file.path)
        if tf and file_map is not None and asked:
            hits = {d.name.lower() for d in file_map.definitions} & asked
            score += weights.exact_identifier * len(hits)
        scores[file.path] = score * (weights.test_file if is_test(file.path) else 1.0)
    return scores


def _length(file: SourceFile, file_map: FileMap | None, weights: RankWeights) -> float:
    if file_map is not None:
        return float(file_map.length)
    return len(file.text[: weights.text_chars]) / TEXT_CHARS_PER_WORD


def is_test(path: str) -> bool:
    """True for test files: in a test folder, or named test_*, *_test, *_tests."""
    parts = path.lower().split("/")
    name = parts[-1].rsplit(".", 1)[0]
    in_test_dir = any(part in TEST_DIRS for part in parts[:-1])
    return in_test_dir or name.startswith("test_") or name.endswith(("_test", "_tests"))


def _term_carriers(inputs: RankInputs, wanted: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Words of the repository that hold an asked-for term (word -> its asked-for terms)."""
    lowered, ends = inputs.lowered_vocabulary()
    found: dict[str, tuple[str, ...]] = {}
    for word in carriers(inputs.vocabulary, lowered, ends, wanted):
        held = tuple(term for term in word_terms(word) if term in wanted)
        if held:
            found[word] = held
    return found


def _weighted_terms(
    file: SourceFile,
    file_map: FileMap | None,
    wanted: frozenset[str],
    carriers: Mapping[str, tuple[str, ...]],
    weights: RankWeights,
) -> dict[str, float]:
    """Weighted count of each asked-for term in one file's fields."""
    tf: dict[str, float] = defaultdict(float)
    path_terms, file_stem = _path_terms(file.path)
    for term in path_terms:
        if term in wanted:
            tf[term] += weights.path
    if file_stem in wanted:
        tf[file_stem] += weights.stem_is_term
    if file_map is None:
        for term in terms_of(file.text[: weights.text_chars]):
            if term in wanted:
                tf[term] += weights.text
        return tf
    hits = sorted(file_map.words.keys() & carriers.keys())  # sorted: same sums each run
    if not hits:  # names and docstrings are made of the file's words: none holds a term
        return tf
    references = file_map.references
    for word in hits:
        count = file_map.words[word]
        referenced = word in references
        for term in carriers[word]:
            tf[term] += weights.body * count + (weights.ref if referenced else 0.0)
    for definition in file_map.definitions:
        for term in carriers.get(definition.name, ()):
            tf[term] += weights.name
        for word in doc_words(definition.doc) if definition.doc else ():
            for term in carriers.get(word, ()):
                tf[term] += weights.doc
    return tf


@functools.lru_cache(maxsize=1 << 16)
def _path_terms(path: str) -> tuple[tuple[str, ...], str]:
    """Terms of a path's folders and name, and the stem of its file name."""
    parts = path.rsplit(".", 1)[0].split("/")
    return tuple(terms_of(" ".join(parts))), stem(parts[-1].lower())
