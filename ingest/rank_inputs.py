"""What the ranker needs of a repository whatever the question, built once per snapshot.

Building it reads every file's words and definitions (~1.5 s on 80 MB of code), and none
of it depends on the question: the link-able names and the files that define them, which
file uses which of them how often, and an inverted index of the words (postings.py). The
parse cache keeps it by a key of the snapshot (paths and content keys), so a second
question about the same repository loads it instead (`to_arrays` / `from_arrays`: numpy
arrays and joined strings, no per-item objects to rebuild; the cache maps them from a file,
array_file.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .codemap import FileMap
from .postings import Postings
from .terms import doc_words

INPUTS_VERSION = "rank-inputs-3"
"""Part of the snapshot key: bump it when what is built here changes."""


@dataclass(frozen=True, slots=True)
class Targets:
    """Names and, for each, the files it leads to (CSR: `flat[start[i]:start[i]+degree[i]]`)."""

    names: tuple[str, ...]
    flat: np.ndarray
    degree: np.ndarray

    @classmethod
    def of(cls, table: Mapping[str, list[int]]) -> Targets:
        flat = np.array([i for found in table.values() for i in found], dtype=np.int32)
        degree = np.array([len(found) for found in table.values()], dtype=np.int32)
        return cls(tuple(table), flat, degree)


@dataclass(frozen=True, slots=True)
class Links:
    """Each (user file, target name) use [L]: file index, name's position, count."""

    user: np.ndarray
    name: np.ndarray
    count: np.ndarray


@dataclass(frozen=True, slots=True)
class RankInputs:
    """Question-independent inputs of `rank` for one repository snapshot."""

    definers: Targets
    """Names (>= min chars) defined in at most `max_definers` files -> those files."""
    uses: Links
    modules: Targets
    """Python module names (dotted suffixes of paths) -> their files."""
    imports: Links
    text: Postings
    """Every word of every mapped file (the vocabulary) -> files, counts, referenced."""
    names: Postings
    """Definition names (those in the vocabulary) -> files, definitions of that name."""
    docs: Postings
    """Docstring words (those in the vocabulary) -> files, occurrences."""
    lengths: np.ndarray
    """[N] words in each file (BM25's length); -1 for a file without a map."""

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every word of every mapped file, once."""
        return self.text.words

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (names as newline-joined UTF-8)."""
        arrays = {
            "definer_flat": self.definers.flat,
            "definer_degree": self.definers.degree,
            "module_flat": self.modules.flat,
            "module_degree": self.modules.degree,
            **{f"uses_{k}": getattr(self.uses, k) for k in ("user", "name", "count")},
            **{f"imports_{k}": getattr(self.imports, k) for k in ("user", "name", "count")},
            **self.text.arrays("text"),
            **self.names.arrays("names"),
            **self.docs.arrays("docs"),
            "lengths": self.lengths,
        }
        texts = ["\n".join(self.definers.names), "\n".join(self.modules.names)]
        texts += [self.text.joined, self.names.joined, self.docs.joined]
        for number, text in enumerate(texts):
            arrays[f"text{number}"] = np.frombuffer(text.encode(), dtype=np.uint8)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> RankInputs:
        names = [arrays[f"text{number}"].tobytes().decode() for number in range(5)]
        return cls(
            Targets(_split(names[0]), arrays["definer_flat"], arrays["definer_degree"]),
            Links(*(arrays[f"uses_{k}"] for k in ("user", "name", "count"))),
            Targets(_split(names[1]), arrays["module_flat"], arrays["module_degree"]),
            Links(*(arrays[f"imports_{k}"] for k in ("user", "name", "count"))),
            Postings.from_arrays(names[2], arrays, "text"),
            Postings.from_arrays(names[3], arrays, "names"),
            Postings.from_arrays(names[4], arrays, "docs"),
            arrays["lengths"],
        )


def _split(joined: str) -> tuple[str, ...]:
    return tuple(joined.split("\n")) if joined else ()


def build_rank_inputs(
    paths: Sequence[str], maps: Mapping[str, FileMap], min_name_chars: int, max_definers: int
) -> RankInputs:
    """The question-independent inputs of `rank` for files `paths` and their `maps`."""
    index = {path: i for i, path in enumerate(paths)}
    everywhere: dict[str, list[int]] = defaultdict(list)
    for path, file_map in maps.items():
        for name in dict.fromkeys(d.name for d in file_map.definitions):
            if len(name) >= min_name_chars:
                everywhere[name].append(index[path])
    # a name defined in many files (`get`, `run`) says nothing about which one is meant
    definers = {n: found for n, found in everywhere.items() if len(found) <= max_definers}
    modules = {m: [index[p] for p in found] for m, found in module_index(paths).items()}
    uses, imports = _links(paths, maps, definers, modules)
    text, names, docs = _word_index(paths, maps)
    lengths = np.array([maps[p].length if p in maps else -1 for p in paths], dtype=np.float64)
    return RankInputs(
        Targets.of(definers), uses, Targets.of(modules), imports, text, names, docs, lengths
    )


def _word_index(
    paths: Sequence[str], maps: Mapping[str, FileMap]
) -> tuple[Postings, Postings, Postings]:
    """Postings of every word, of definition names and of docstring words, file by file.

    Names and docstring words that are not words of any file are left out: the ranker
    matches only words of the vocabulary."""
    mapped = [(i, maps[path]) for i, path in enumerate(paths) if path in maps]
    vocabulary: dict[str, int] = {}  # a dict keeps a deterministic order without a sort
    for _, file_map in mapped:
        vocabulary.update(file_map.words)
    vocabulary = {word: i for i, word in enumerate(vocabulary)}
    text = Postings.build(vocabulary, ((i, m.words, m.references) for i, m in mapped))
    named = [(i, _known(Counter(d.name for d in m.definitions), vocabulary)) for i, m in mapped]
    documented = [(i, _known(_doc_counts(m), vocabulary)) for i, m in mapped]
    return (
        text,
        Postings.build(_positions(named), ((i, c, None) for i, c in named)),
        Postings.build(_positions(documented), ((i, c, None) for i, c in documented)),
    )


def _doc_counts(file_map: FileMap) -> Counter[str]:
    counts: Counter[str] = Counter()
    for definition in file_map.definitions:
        if definition.doc:
            counts.update(doc_words(definition.doc))
    return counts


def _known(counts: Counter[str], vocabulary: Mapping[str, int]) -> dict[str, int]:
    return {word: n for word, n in counts.items() if word in vocabulary}


def _positions(per_file: list[tuple[int, dict[str, int]]]) -> dict[str, int]:
    """Words in first-seen order -> position."""
    seen: dict[str, None] = {}
    for _, counts in per_file:
        seen.update(dict.fromkeys(counts))
    return {word: i for i, word in enumerate(seen)}


def _links(
    paths: Sequence[str],
    maps: Mapping[str, FileMap],
    definers: Mapping[str, list[int]],
    modules: Mapping[str, list[int]],
) -> tuple[Links, Links]:
    """Uses of definer names and of module names, file by file."""
    return _uses(paths, maps, definers), _uses(paths, maps, modules)


def _uses(paths: Sequence[str], maps: Mapping[str, FileMap], targets: Mapping) -> Links:
    """(file, name position, count) of each name of `targets` each file uses."""
    position = {name: i for i, name in enumerate(targets)}
    users: list[int] = []
    names: list[int] = []
    counts: list[int] = []
    for i, path in enumerate(paths):
        file_map = maps.get(path)
        if file_map is None:
            continue
        references = file_map.references
        found = sorted(references.keys() & position.keys())  # sorted: same sums every run
        users += [i] * len(found)
        names += [position[name] for name in found]
        counts += [references[name] for name in found]
    return Links(
        np.array(users, dtype=np.int32),
        np.array(names, dtype=np.int32),
        np.array(counts, dtype=np.int32),
    )


def module_index(paths: Sequence[str]) -> dict[str, list[str]]:
    """Python module names (every dotted suffix of at least two parts, or the whole) -> files."""
    index: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        if not path.endswith((".py", ".pyi")):
            continue
        parts = path.rsplit(".", 1)[0].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for start in range(len(parts)):
            if len(parts) - start >= 2 or start == 0:
                index[".".join(parts[start:])].append(path)
    return index
