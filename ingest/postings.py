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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

ARRAYS = ("ends", "start", "file", "count", "flag")


def split_lines(joined: str) -> tuple[str, ...]:
    """The words of a newline-joined text ("" holds none)."""
    return tuple(joined.split("\n")) if joined else ()


@dataclass(frozen=True, slots=True)
class Postings:
    """Words and, for each, its files (CSR: word i's postings are `start[i]:start[i + 1]`)."""

    words: tuple[str, ...]
    joined: str
    """The words joined by newlines (all ASCII: characters are bytes)."""
    ends: np.ndarray
    """[W] offset in `joined` just past each word's newline."""
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
        # per file one C-speed pass per array (fromiter over a map), one concatenation at
        # the end: no Python int per posting is kept, and the sort runs on int32
        lookup = words.__getitem__
        ids: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        flags: list[np.ndarray] = []
        files: list[int] = []
        sizes: list[int] = []
        for index, counted, references in per_file:
            size = len(counted)
            ids.append(np.fromiter(map(lookup, counted), dtype=np.int32, count=size))
            counts.append(np.fromiter(counted.values(), dtype=np.int32, count=size))
            if references is None:
                flags.append(np.ones(size, dtype=bool))
            else:
                flags.append(np.fromiter(map(references.__contains__, counted), bool, size))
            files.append(index)
            sizes.append(size)
        every = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        order = np.argsort(every, kind="stable")  # files stay ascending within a word
        start = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(np.bincount(every, minlength=len(words)), out=start[1:])
        file = np.repeat(np.array(files, dtype=np.int32), sizes)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        return cls(
            tuple(words),
            "\n".join(words),
            np.cumsum(lengths + 1),
            start,
            file[order],
            np.concatenate(counts)[order] if counts else np.zeros(0, dtype=np.int32),
            np.concatenate(flags)[order] if flags else np.zeros(0, dtype=bool),
        )

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays to store, named under `prefix` (the words as newline-joined text)."""
        found = {f"{prefix}_{name}": getattr(self, name) for name in ARRAYS}
        found[f"{prefix}_words"] = np.frombuffer(self.joined.encode(), dtype=np.uint8)
        return found

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> Postings:
        """The postings stored under `prefix` (`arrays`)."""
        joined = arrays[f"{prefix}_words"].tobytes().decode()
        return cls(split_lines(joined), joined, *(arrays[f"{prefix}_{name}"] for name in ARRAYS))

    def find(self, word: str) -> int | None:
        """Position of `word`, or None."""
        try:
            return self.words.index(word)
        except ValueError:
            return None

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

    def containing(self, wanted: frozenset[str]) -> list[int]:
        """Positions of the words where an asked-for term starts a part (lower-cased).

        A term is a stemmed part, a prefix of a lower-cased part, so only these can hold it.
        `str.find` over the joined words finds each term (twice as fast as a regex
        alternation); a find between two lower-case letters of the word as written is
        inside a part (`rat` in `generate`), never at its start, and is passed over."""
        if not wanted or not self.words:
            return []
        lowered = self.joined.lower()
        starts: list[int] = []
        for term in sorted(wanted):
            at = lowered.find(term)
            while at >= 0:
                starts.append(at)
                at = lowered.find(term, at + 1)
        found = np.array(starts, dtype=np.int64)
        written = np.frombuffer(self.joined.encode("ascii"), dtype=np.uint8)
        before = written[np.maximum(found - 1, 0)]
        inside = _is_lower(before) & _is_lower(written[found]) & (found > 0)
        return np.unique(np.searchsorted(self.ends, found[~inside], side="right")).tolist()

    def equal_lowered(self, wanted: frozenset[str]) -> list[int]:
        """Positions of the words whose lower-cased form is one of `wanted` (lower-case)."""
        if not wanted or not self.words:
            return []
        body = "|".join(re.escape(word) for word in sorted(wanted))
        pattern = re.compile(f"^(?:{body})$", re.MULTILINE)
        found = (m.start() for m in pattern.finditer(self.joined.lower()))
        starts = np.fromiter(found, dtype=np.int64)
        return np.unique(np.searchsorted(self.ends, starts, side="right")).tolist()


def _is_lower(letters: np.ndarray) -> np.ndarray:
    """[n] which ASCII codes are lower-case letters."""
    return (letters >= ord("a")) & (letters <= ord("z"))
