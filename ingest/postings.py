"""An inverted index of a repository's words: word -> the files that hold it, and how often.

The ranker asks, per question, which files hold the few words that carry its terms. Asking
every file's word counts costs a large repository ~0.5 s to load them from the cache and
~0.4 s to scan them; the index answers from flat arrays in milliseconds. It is built with
the ranker's other question-independent inputs, once per repository snapshot, and stored
with them (`RankInputs`), so its words and postings always belong to the same files.

Three fields are indexed: every word of a file (with whether the file references it as a
name), definition names, and the words of docstrings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Postings:
    """Words and, for each, its files (CSR: word i's postings are `start[i]:start[i + 1]`)."""

    words: tuple[str, ...]
    joined: str
    """The words joined by newlines (all ASCII: characters are bytes)."""
    start: np.ndarray
    """[W + 1] offsets into the posting arrays."""
    file: np.ndarray
    """[P] file index of each posting (ascending within a word)."""
    count: np.ndarray
    """[P] occurrences of the word in that file's field."""
    flag: np.ndarray
    """[P] the file references the word as a name (the whole-text field; else all true)."""

    @classmethod
    def build(
        cls, words: dict[str, int], per_file: Iterable[tuple[int, dict[str, int], object]]
    ) -> Postings:
        """Postings of `words` (word -> position) from (file index, word counts, names used)
        per file; `names used` is a container of referenced words, or None for all."""
        # plain lists extended per file, one array at the end: numpy calls per file cost
        # more than the data on thousands of small files
        word_ids: list[int] = []
        files: list[int] = []
        counts: list[int] = []
        flags: list[bool] = []
        lookup = words.__getitem__
        for index, counted, references in per_file:
            word_ids += map(lookup, counted)
            files += [index] * len(counted)
            counts += counted.values()
            if references is None or references is counted:
                flags += [True] * len(counted)
            else:
                flags += [word in references for word in counted]
        ids = np.array(word_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")  # files stay ascending within a word
        start = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ids, minlength=len(words)), out=start[1:])
        return cls(
            tuple(words),
            "\n".join(words),
            start,
            np.array(files, dtype=np.int32)[order],
            np.array(counts, dtype=np.int32)[order],
            np.array(flags, dtype=bool)[order],
        )

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays to store, named under `prefix` (the words are stored as text)."""
        names = ("start", "file", "count", "flag")
        return {f"{prefix}_{name}": getattr(self, name) for name in names}

    @classmethod
    def from_arrays(cls, joined: str, arrays, prefix: str) -> Postings:
        """Postings of the newline-`joined` words from the arrays stored under `prefix`."""
        words = tuple(joined.split("\n")) if joined else ()
        names = ("start", "file", "count", "flag")
        return cls(words, joined, *(arrays[f"{prefix}_{name}"] for name in names))

    def gather(self, chosen: list[int], repeat: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Posting positions of the words `chosen`, and each one's word's `repeat` (how many
        times the word holds the term being summed)."""
        if not chosen:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ids = np.array(chosen, dtype=np.int64)
        lengths = self.start[ids + 1] - self.start[ids]
        first = np.repeat(self.start[ids], lengths)
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return first + within, np.repeat(np.array(repeat, dtype=np.float64), lengths)

    def lowered(self) -> tuple[str, np.ndarray]:
        """The words joined by newlines and lower-cased, and where each word ends (the
        offset past its newline)."""
        lowered = self.joined.lower()
        breaks = np.flatnonzero(np.frombuffer(lowered.encode("ascii"), dtype=np.uint8) == 10)
        return lowered, np.append(breaks + 1, len(lowered) + 1)

    def containing(self, wanted: frozenset[str]) -> list[int]:
        """Positions of the words that contain an asked-for term as text (lower-cased).

        A term is a stemmed part, a prefix of a lower-cased part, so only these can hold it;
        `str.find` over the joined words finds them (twice as fast as a regex alternation)."""
        if not wanted or not self.words:
            return []
        lowered, ends = self.lowered()
        starts: list[int] = []
        for term in sorted(wanted):
            at = lowered.find(term)
            while at >= 0:
                starts.append(at)
                at = lowered.find(term, at + 1)
        found = np.array(starts, dtype=np.int64)
        return np.unique(np.searchsorted(ends, found, side="right")).tolist()

    def equal_lowered(self, wanted: frozenset[str]) -> list[int]:
        """Positions of the words whose lower-cased form is one of `wanted` (lower-case)."""
        if not wanted or not self.words:
            return []
        lowered, ends = self.lowered()
        body = "|".join(re.escape(word) for word in sorted(wanted))
        pattern = re.compile(f"^(?:{body})$", re.MULTILINE)
        starts = np.fromiter((m.start() for m in pattern.finditer(lowered)), dtype=np.int64)
        return np.unique(np.searchsorted(ends, starts, side="right")).tolist()
