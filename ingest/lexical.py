"""How well each file's words match a question: a BM25-style score over weighted fields.

A file scores on the question's terms in its path, definition names, docstrings, the names
it uses and its whole text (rare terms count more, repeats saturate, long files are
discounted). Only the few terms a question asks for are counted, at ranking time: a word
or name can hold a term only if it contains the term as text, so a substring test over the
repository's words picks the few to split and stem, and the inverted index (postings.py)
says which files hold them. Each field's hits are counted per (file, term) as whole
numbers and weighted once, so the score does not depend on the order words are met.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .postings import Postings
from .rank_inputs import RankInputs
from .terms import Question, terms_of, word_terms
from .walk import SourceFile

if TYPE_CHECKING:
    from .rank import RankWeights

TEXT_CHARS_PER_WORD = 6.0
"""Prose length in words, estimated from characters (text files have no parsed map)."""
PATH, STEM, BODY, REF, NAME, DOC, TEXT = range(7)
"""Rows of the per-(file, term) counts: where a term was found."""


def lexical_scores(
    files: Sequence[SourceFile], question: Question, weights: RankWeights, inputs: RankInputs
) -> dict[str, float]:
    """BM25-style score of each file on the question's terms (0 for an empty question)."""
    if question.empty:
        return {file.path: 0.0 for file in files}
    terms = sorted(question.terms)
    found = _found_counts(files, terms, inputs, weights)  # [7, N, T]
    w = weights
    field_weights = np.array([w.path, w.stem_is_term, w.body, w.ref, w.name, w.doc, w.text])
    tf = np.tensordot(field_weights, found, axes=1)  # [N, T]
    present = (found > 0).any(axis=0)
    total = len(files)
    doc_freq = present.sum(axis=0)
    idf = np.log(1 + (total - doc_freq + 0.5) / (doc_freq + 0.5))
    lengths = inputs.lengths.copy()
    for i in np.flatnonzero(lengths < 0).tolist():
        lengths[i] = len(files[i].text[: weights.text_chars]) / TEXT_CHARS_PER_WORD
    mean_length = sum(lengths.tolist()) / max(total, 1) or 1.0
    norm = w.saturation * (1 - w.length_norm + w.length_norm * lengths / mean_length)
    parts = idf * tf * (1 + weights.saturation) / (tf + norm[:, None])
    score = np.where(present, parts, 0.0).sum(axis=1)
    score += (
        weights.exact_identifier
        * _exact_hits(inputs.names, question, len(files))
        * (present.any(axis=1))
    )
    score *= np.where(inputs.tests, weights.test_file, 1.0)
    return dict(zip((file.path for file in files), score.tolist(), strict=True))


def _found_counts(
    files: Sequence[SourceFile], terms: list[str], inputs: RankInputs, weights: RankWeights
) -> np.ndarray:
    """[7, N, T] how often each term was found in each file, by field (see PATH..TEXT)."""
    wanted = frozenset(terms)
    found = np.zeros((7, len(files), len(terms)))
    for i in np.flatnonzero(inputs.lengths < 0).tolist():  # no map: the opening text
        for term in terms_of(files[i].text[: weights.text_chars]):
            if term in wanted:
                found[TEXT, i, terms.index(term)] += 1
    for field, postings in ((PATH, inputs.path_terms), (STEM, inputs.stems)):
        for column, term in enumerate(terms):
            at = postings.find(term)
            if at is not None:
                start, end = postings.start[at], postings.start[at + 1]
                found[field, postings.file[start:end], column] = postings.count[start:end]
    size = len(files)
    for field, postings in ((BODY, inputs.text), (NAME, inputs.names), (DOC, inputs.docs)):
        holders = _holders(postings, terms)
        for column, term in enumerate(terms):
            places, times = postings.gather(*holders[term])
            file = postings.file[places]
            found[field, :, column] = np.bincount(
                file, weights=postings.count[places] * times, minlength=size
            )
            if field == BODY:
                found[REF, :, column] = np.bincount(
                    file, weights=postings.flag[places] * times, minlength=size
                )
    return found


def _holders(postings: Postings, terms: list[str]) -> dict[str, tuple[list[int], list[int]]]:
    """For each term: the words of `postings` that hold it, and how many times each does."""
    held: dict[str, tuple[list[int], list[int]]] = {term: ([], []) for term in terms}
    for position in postings.containing(frozenset(terms)):
        for term, times in Counter(word_terms(postings.words[position])).items():
            if term in held:
                held[term][0].append(position)
                held[term][1].append(times)
    return held


def _exact_hits(names: Postings, question: Question, size: int) -> np.ndarray:
    """[N] how many distinct names the question spells out (any case) each file defines."""
    asked = frozenset(name.lower() for name in question.identifiers)
    hits: dict[int, set[str]] = {}
    for position in names.equal_lowered(asked):
        lowered = names.words[position].lower()
        start, end = names.start[position], names.start[position + 1]
        for file in names.file[start:end].tolist():
            hits.setdefault(file, set()).add(lowered)
    counts = np.zeros(size)
    for file, held in hits.items():
        counts[file] = len(held)
    return counts
