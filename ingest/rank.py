"""Rank files and definitions for a question: lexical match, then PageRank over the file graph.

Each file scores on the question's terms in its path, definition names, docstrings and the
names it uses (BM25-style: rare terms count more, repeats saturate). Files form a graph: an
edge runs from a file that uses a name to each file that defines it (and from a Python
import to the imported module). PageRank personalized toward the matching files spreads
relevance to what they depend on; the final score mixes both.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .codemap import Definition, FileMap
from .terms import Question, split_identifier, stem, terms_of
from .walk import SourceFile

TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs"})
TEXT_CHARS_PER_TERM = 8.0
"""Prose length in terms, estimated from characters (text files have no parsed map)."""
MAX_DEFINITION_FILES = 400
PAGERANK_MAX_ITERATIONS = 100
PAGERANK_TOLERANCE = 1e-6
"""Per node, summed L1 change that ends the power iteration (networkx's defaults)."""
"""Only the best files' definitions are ranked: the map and the packer never reach further."""


@dataclass(frozen=True, slots=True)
class RankWeights:
    """Every weight the ranking uses, named; defaults were set on bench/retrieval_questions."""

    path: float = 3.0
    stem_is_term: float = 3.0
    name: float = 2.0
    doc: float = 1.0
    ref: float = 0.4
    body: float = 0.2
    text: float = 1.0
    exact_identifier: float = 4.0
    saturation: float = 1.0
    length_norm: float = 0.5
    """BM25's b: how much a long file's many matches are discounted (0: not at all)."""
    test_file: float = 0.3
    """Tests mention everything they test; questions ask about the code itself."""
    import_edge: float = 2.0
    private_name: float = 0.1
    asked_name: float = 10.0
    max_definers: int = 8
    min_name_chars: int = 3
    damping: float = 0.85
    lexical_share: float = 0.8
    text_chars: int = 4000

    def __post_init__(self) -> None:
        if not 0 < self.damping < 1 or not 0 <= self.lexical_share <= 1:
            raise ValueError(f"damping in (0, 1) and lexical_share in [0, 1]: {self}")


@dataclass(frozen=True, slots=True)
class RankedDefinition:
    path: str
    definition: Definition
    score: float
    matches: int = 0
    """Question terms in the definition's name (identifiers the question names count 3)."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """Files and definitions, best first (ties broken by path, then line)."""

    files: tuple[tuple[str, float], ...]
    definitions: tuple[RankedDefinition, ...]


def rank(
    files: Sequence[SourceFile],
    maps: Mapping[str, FileMap],
    question: Question,
    weights: RankWeights | None = None,
) -> Ranking:
    """Order `files` (and their `maps`' definitions) by relevance to `question`."""
    weights = weights or RankWeights()
    paths = [file.path for file in files]
    lexical = _lexical_scores(files, maps, question, weights)
    edges, uses = _file_graph(paths, maps, question, weights)
    personal = {path: score for path, score in lexical.items() if score > 0} or None
    pagerank = personalized_pagerank(paths, edges, personal, weights.damping)
    top_lex = max(lexical.values(), default=0.0) or 1.0
    top_pr = max(pagerank.values(), default=0.0) or 1.0
    share = weights.lexical_share if personal else 0.0
    score = {
        path: share * lexical[path] / top_lex + (1 - share) * pagerank.get(path, 0.0) / top_pr
        for path in paths
    }
    ordered = tuple(sorted(score.items(), key=lambda item: (-item[1], item[0])))
    return Ranking(ordered, _rank_definitions(maps, ordered, uses, question))


def _lexical_scores(
    files: Sequence[SourceFile],
    maps: Mapping[str, FileMap],
    question: Question,
    weights: RankWeights,
) -> dict[str, float]:
    """BM25-style score of each file on the question's terms (0 for an empty question)."""
    if question.empty:
        return {file.path: 0.0 for file in files}
    field_tf: dict[str, dict[str, float]] = {}
    doc_freq: dict[str, int] = defaultdict(int)
    for file in files:
        tf = _weighted_terms(file, maps.get(file.path), question.terms, weights)
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
        scores[file.path] = score * (weights.test_file if _is_test(file.path) else 1.0)
    return scores


def _length(file: SourceFile, file_map: FileMap | None, weights: RankWeights) -> float:
    if file_map is not None:
        return float(file_map.length)
    return len(file.text[: weights.text_chars]) / TEXT_CHARS_PER_TERM


def _is_test(path: str) -> bool:
    parts = path.lower().split("/")
    name = parts[-1].rsplit(".", 1)[0]
    in_test_dir = any(part in TEST_DIRS for part in parts[:-1])
    return in_test_dir or name.startswith("test_") or name.endswith(("_test", "_tests"))


def _weighted_terms(
    file: SourceFile, file_map: FileMap | None, wanted: frozenset[str], weights: RankWeights
) -> dict[str, float]:
    """Weighted count of each asked-for term in one file's fields."""
    tf: dict[str, float] = defaultdict(float)
    path_terms, file_stem = _path_terms(file.path)
    for term in path_terms:
        if term in wanted:
            tf[term] += weights.path
    if file_stem in wanted:
        tf[file_stem] += weights.stem_is_term
    if file_map is not None:
        for term in sorted(wanted & file_map.terms.keys()):
            names, docs, refs, body = file_map.terms[term]
            tf[term] += (
                weights.name * names + weights.doc * docs + weights.ref * refs + weights.body * body
            )
    else:
        for term in terms_of(file.text[: weights.text_chars]):
            if term in wanted:
                tf[term] += weights.text
    return tf


@functools.lru_cache(maxsize=1 << 16)
def _path_terms(path: str) -> tuple[tuple[str, ...], str]:
    """Terms of a path's folders and name, and the stem of its file name."""
    parts = path.rsplit(".", 1)[0].split("/")
    return tuple(terms_of(" ".join(parts))), stem(parts[-1].lower())


def _file_graph(
    paths: list[str], maps: Mapping[str, FileMap], question: Question, weights: RankWeights
) -> tuple[dict[tuple[str, str], float], dict[str, int]]:
    """Files linked user -> definer (weighted by use), and the uses of each linking name in
    all files (a definition's inbound uses are these less its own file's)."""
    everywhere: dict[str, list[str]] = defaultdict(list)
    for path, file_map in maps.items():
        for name in {d.name for d in file_map.definitions}:
            if len(name) >= weights.min_name_chars:
                everywhere[name].append(path)
    # a name defined in many files (`get`, `run`) says nothing about which one is meant
    definers = {n: found for n, found in everywhere.items() if len(found) <= weights.max_definers}
    modules = _module_index(paths)
    asked = question.identifiers
    name_weight = {name: _name_weight(name, asked, weights) for name in definers}
    edges: dict[tuple[str, str], float] = defaultdict(float)
    uses: dict[str, int] = defaultdict(int)
    for src, file_map in maps.items():
        references = file_map.references
        for name in sorted(references.keys() & definers.keys()):  # sorted: same sums every run
            count = references[name]
            uses[name] += count
            factor = math.sqrt(count) * name_weight[name]
            for dst in definers[name]:
                if dst != src:
                    edges[(src, dst)] += factor
        for name in sorted(references.keys() & modules.keys()):
            for dst in modules[name]:
                if dst != src:
                    edges[(src, dst)] += weights.import_edge
    return edges, uses


def personalized_pagerank(
    nodes: Sequence[str],
    edges: Mapping[tuple[str, str], float],
    personal: Mapping[str, float] | None,
    damping: float,
) -> dict[str, float]:
    """PageRank by power iteration on arrays, as `networkx.pagerank` computes it (weighted
    out-edges normalized per node, dangling nodes' rank spread by the personalization).

    networkx builds a graph object and a scipy matrix first, which costs seconds on a large
    repository's ~200k edges; bincount over edge arrays does the same sums in milliseconds.
    """
    index = {node: i for i, node in enumerate(nodes)}
    size = len(nodes)
    if size == 0:
        return {}
    src = np.fromiter((index[a] for a, _ in edges), dtype=np.int64, count=len(edges))
    dst = np.fromiter((index[b] for _, b in edges), dtype=np.int64, count=len(edges))
    weight = np.fromiter(edges.values(), dtype=np.float64, count=len(edges))
    out = np.bincount(src, weights=weight, minlength=size)
    share = weight / out[src] if len(edges) else weight
    dangling = out == 0
    if personal:
        restart = np.zeros(size)
        for node, value in personal.items():
            restart[index[node]] = value
        restart /= restart.sum()
    else:
        restart = np.full(size, 1.0 / size)
    rank_now = np.full(size, 1.0 / size)
    for _ in range(PAGERANK_MAX_ITERATIONS):
        previous = rank_now
        spread = np.bincount(dst, weights=previous[src] * share, minlength=size)
        rank_now = damping * (spread + previous[dangling].sum() * restart) + (1 - damping) * restart
        if np.abs(rank_now - previous).sum() < size * PAGERANK_TOLERANCE:
            break
    return dict(zip(nodes, rank_now.tolist(), strict=True))


def _name_weight(name: str, asked: frozenset[str], weights: RankWeights) -> float:
    if name in asked:
        return weights.asked_name
    if name.startswith("_"):
        return weights.private_name
    return 1.0


def _module_index(paths: list[str]) -> dict[str, list[str]]:
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


def _rank_definitions(
    maps: Mapping[str, FileMap],
    ordered: Sequence[tuple[str, float]],
    uses: Mapping[str, int],
    question: Question,
) -> tuple[RankedDefinition, ...]:
    """A definition ranks by its file, how often others use it, and how well it matches."""
    ranked: list[RankedDefinition] = []
    asked = {name.lower() for name in question.identifiers}
    for path, base in ordered[:MAX_DEFINITION_FILES]:
        file_map = maps.get(path)
        if file_map is None:
            continue
        for definition in file_map.definitions:
            inbound = uses.get(definition.name, 0)
            if inbound:
                inbound -= file_map.references.get(definition.name, 0)
            words = {stem(part) for part in split_identifier(definition.name)}
            match = len(words & question.terms) + (3 if definition.name.lower() in asked else 0)
            private = 0.5 if definition.name.startswith("_") else 1.0
            score = base * (1 + math.log1p(inbound)) * (1 + match) * private
            ranked.append(RankedDefinition(path, definition, score, match))
    ranked.sort(key=lambda r: (-r.score, r.path, r.definition.start))
    return tuple(ranked)
