"""Rank files and definitions for a question: lexical match, then PageRank over the file graph.

Each file scores on the question's terms in its path, definition names, docstrings and the
names it uses (BM25-style: rare terms count more, repeats saturate). Files form a graph: an
edge runs from a file that uses a name to each file that defines it (and from a Python
import to the imported module). PageRank personalized toward the matching files spreads
relevance to what they depend on; the final score mixes both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from .codemap import Definition, FileMap
from .terms import Question, split_identifier, stem, terms_of
from .walk import SourceFile


@dataclass(frozen=True, slots=True)
class RankWeights:
    """Every weight the ranking uses, named; defaults were set on bench/retrieval_questions."""

    path: float = 3.0
    stem_is_term: float = 3.0
    name: float = 2.0
    doc: float = 1.0
    ref: float = 0.4
    text: float = 1.0
    exact_identifier: float = 4.0
    saturation: float = 1.0
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
    graph, inbound = _file_graph(paths, maps, question, weights)
    personal = {path: score for path, score in lexical.items() if score > 0} or None
    pagerank = nx.pagerank(graph, alpha=weights.damping, personalization=personal, weight="weight")
    top_lex = max(lexical.values(), default=0.0) or 1.0
    top_pr = max(pagerank.values(), default=0.0) or 1.0
    share = weights.lexical_share if personal else 0.0
    score = {
        path: share * lexical[path] / top_lex + (1 - share) * pagerank.get(path, 0.0) / top_pr
        for path in paths
    }
    ordered = tuple(sorted(score.items(), key=lambda item: (-item[1], item[0])))
    return Ranking(ordered, _rank_definitions(maps, score, inbound, question))


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
    asked = {name.lower() for name in question.identifiers}
    scores: dict[str, float] = {}
    for file in files:
        tf = field_tf[file.path]
        score = sum(idf[t] * x / (x + weights.saturation) for t, x in tf.items())
        file_map = maps.get(file.path)
        if file_map is not None and asked:
            hits = {d.name.lower() for d in file_map.definitions} & asked
            score += weights.exact_identifier * len(hits)
        scores[file.path] = score
    return scores


def _weighted_terms(
    file: SourceFile, file_map: FileMap | None, wanted: frozenset[str], weights: RankWeights
) -> dict[str, float]:
    """Weighted count of each asked-for term in one file's fields."""
    tf: dict[str, float] = defaultdict(float)
    parts = file.path.rsplit(".", 1)[0].split("/")
    for term in terms_of(" ".join(parts)):
        if term in wanted:
            tf[term] += weights.path
    file_stem = stem(parts[-1].lower())
    if file_stem in wanted:
        tf[file_stem] += weights.stem_is_term
    if file_map is not None:
        for term in wanted & file_map.terms.keys():
            names, docs, refs = file_map.terms[term]
            tf[term] += weights.name * names + weights.doc * docs + weights.ref * refs
    else:
        for term in terms_of(file.text[: weights.text_chars]):
            if term in wanted:
                tf[term] += weights.text
    return tf


def _file_graph(
    paths: list[str], maps: Mapping[str, FileMap], question: Question, weights: RankWeights
) -> tuple[nx.DiGraph, dict[tuple[str, str], int]]:
    """Files linked user -> definer (weighted by use), and each definition's inbound uses."""
    definers: dict[str, list[str]] = defaultdict(list)
    for path, file_map in maps.items():
        for name in {d.name for d in file_map.definitions}:
            if len(name) >= weights.min_name_chars:
                definers[name].append(path)
    modules = _module_index(paths)
    asked = question.identifiers
    edges: dict[tuple[str, str], float] = defaultdict(float)
    inbound: dict[tuple[str, str], int] = defaultdict(int)
    for src, file_map in maps.items():
        for name, count in file_map.references.items():
            targets = definers.get(name)
            if targets is not None and len(targets) <= weights.max_definers:
                factor = math.sqrt(count) * _name_weight(name, asked, weights)
                for dst in targets:
                    if dst != src:
                        edges[(src, dst)] += factor
                        inbound[(dst, name)] += count
            for dst in modules.get(name, ()):
                if dst != src:
                    edges[(src, dst)] += weights.import_edge
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    graph.add_weighted_edges_from((src, dst, w) for (src, dst), w in edges.items())
    return graph, inbound


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
    file_score: Mapping[str, float],
    inbound: Mapping[tuple[str, str], int],
    question: Question,
) -> tuple[RankedDefinition, ...]:
    """A definition ranks by its file, how often others use it, and how well it matches."""
    ranked: list[RankedDefinition] = []
    asked = {name.lower() for name in question.identifiers}
    for path, file_map in maps.items():
        base = file_score.get(path, 0.0)
        for definition in file_map.definitions:
            uses = inbound.get((path, definition.name), 0)
            words = {stem(part) for part in split_identifier(definition.name)}
            match = len(words & question.terms) + (3 if definition.name.lower() in asked else 0)
            private = 0.5 if definition.name.startswith("_") else 1.0
            score = base * (1 + math.log1p(uses)) * (1 + match) * private
            ranked.append(RankedDefinition(path, definition, score))
    ranked.sort(key=lambda r: (-r.score, r.path, r.definition.start))
    return tuple(ranked)
