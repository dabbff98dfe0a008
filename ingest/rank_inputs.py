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
from .paths import is_test, path_terms
from .postings import Postings, split_lines
from .terms import doc_words

INPUTS_VERSION = "rank-inputs-5"
"""Part of the snapshot key: bump it when what is built here changes."""
LINK_ARRAYS = ("user", "name", "count")
POSTINGS = ("text", "names", "docs", "path_terms", "stems")


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

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        names = np.frombuffer("\n".join(self.names).encode(), dtype=np.uint8)
        return {
            f"{prefix}_flat": self.flat,
            f"{prefix}_degree": self.degree,
            f"{prefix}_names": names,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> Targets:
        names = split_lines(arrays[f"{prefix}_names"].tobytes().decode())
        return cls(names, arrays[f"{prefix}_flat"], arrays[f"{prefix}_degree"])


@dataclass(frozen=True, slots=True)
class Links:
    """Each (user file, target name) use [L]: file index, name's position, count; in file
    order (one file's uses are one run)."""

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
    path_terms: Postings
    """Terms of each file's folders and name -> files, occurrences."""
    stems: Postings
    """The stem of each file's name -> files."""
    lengths: np.ndarray
    """[N] words in each file (BM25's length); -1 for a file without a map."""
    tests: np.ndarray
    """[N] the file is a test (paths.is_test)."""

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every word of every mapped file, once."""
        return self.text.words

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (words and names as newline-joined UTF-8)."""
        arrays = {
            **self.definers.arrays("definers"),
            **self.modules.arrays("modules"),
            **{f"uses_{k}": getattr(self.uses, k) for k in LINK_ARRAYS},
            **{f"imports_{k}": getattr(self.imports, k) for k in LINK_ARRAYS},
            "lengths": self.lengths,
            "tests": self.tests,
        }
        for name in POSTINGS:
            arrays.update(getattr(self, name).arrays(name))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> RankInputs:
        return cls(
            definers=Targets.from_arrays(arrays, "definers"),
            uses=Links(*(arrays[f"uses_{k}"] for k in LINK_ARRAYS)),
            modules=Targets.from_arrays(arrays, "modules"),
            imports=Links(*(arrays[f"imports_{k}"] for k in LINK_ARRAYS)),
            lengths=arrays["lengths"],
            tests=arrays["tests"],
            **{name: Postings.from_arrays(arrays, name) for name in POSTINGS},
        )


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
    terms, stems = _path_index(paths)
    return RankInputs(
        definers=Targets.of(definers),
        uses=uses,
        modules=Targets.of(modules),
        imports=imports,
        text=text,
        names=names,
        docs=docs,
        path_terms=terms,
        stems=stems,
        lengths=np.array([maps[p].length if p in maps else -1 for p in paths], dtype=np.float64),
        tests=np.array([is_test(path) for path in paths], dtype=bool),
    )


def _path_index(paths: Sequence[str]) -> tuple[Postings, Postings]:
    """Postings of the terms of each path and of each file name's stem."""
    found = [path_terms(path) for path in paths]
    terms = [(i, dict(Counter(path_found))) for i, (path_found, _) in enumerate(found)]
    stems = [(i, {stem: 1} if stem else {}) for i, (_, stem) in enumerate(found)]
    return (
        Postings.build(_positions(terms), ((i, c, None) for i, c in terms)),
        Postings.build(_positions(stems), ((i, c, None) for i, c in stems)),
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
    vocabulary = dict(zip(vocabulary, range(len(vocabulary)), strict=True))
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
    return dict(zip(seen, range(len(seen)), strict=True))


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
    position = dict(zip(targets, range(len(targets)), strict=True))
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
        names += map(position.__getitem__, found)  # map: no Python frame per name
        counts += map(references.__getitem__, found)
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
