"""Rank files and definitions for a question: lexical match, then PageRank over the file graph.

Each file scores on the question's terms in its path, definition names, docstrings and the
names it uses (BM25-style, in lexical.py). Files form a graph: an
edge runs from a file that uses a name to each file that defines it (and from a Python
import to the imported module). PageRank personalized toward the matching files spreads
relevance to what they depend on; the final score mixes both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .codemap import Definition, FileMap
from .lexical import lexical_scores
from .rank_inputs import Links, RankInputs, Targets, build_rank_inputs
from .terms import Question, split_identifier, stem
from .walk import SourceFile

MAX_DEFINITION_FILES = 400
"""Only the best files' definitions are ranked: the map and the packer never reach further."""
PAGERANK_MAX_ITERATIONS = 100
PAGERANK_TOLERANCE = 1e-6
"""Per node, summed L1 change that ends the power iteration (networkx's defaults)."""


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


class RankedDefinition(NamedTuple):
    """A definition of a file and its score (a named tuple: ~20k are made per question)."""

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
    definitions: Mapping[str, tuple[Definition, ...]],
    question: Question,
    inputs: RankInputs,
    weights: RankWeights | None = None,
) -> Ranking:
    """Order `files` (and their `definitions`, path -> those of each file that has some) by
    relevance to `question`. `inputs`: the question-independent part, built by `rank_inputs`
    with the same `weights` (or loaded from a cache)."""
    weights = weights or RankWeights()
    paths = [file.path for file in files]
    lexical = lexical_scores(files, question, weights, inputs)
    edges, uses = _file_graph(inputs, question, weights)
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
    top = ordered[:MAX_DEFINITION_FILES]
    position = {path: i for i, path in enumerate(paths)}
    inbound = _Inbound(inputs, uses)
    return Ranking(ordered, _rank_definitions(definitions, top, position, inbound, question))


@dataclass(frozen=True, slots=True)
class Edges:
    """Weighted edges between node indices [E]; a pair may repeat (repeats add up)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, nodes: Sequence[str], edges: Mapping[tuple[str, str], float]) -> Edges:
        """Edges given by node names."""
        index = {node: i for i, node in enumerate(nodes)}
        src = np.fromiter((index[a] for a, _ in edges), dtype=np.int64, count=len(edges))
        dst = np.fromiter((index[b] for _, b in edges), dtype=np.int64, count=len(edges))
        return cls(src, dst, np.fromiter(edges.values(), dtype=np.float64, count=len(edges)))


def rank_inputs(
    paths: Sequence[str], maps: Mapping[str, FileMap], weights: RankWeights
) -> RankInputs:
    """The question-independent inputs of `rank` (graph targets and uses, vocabulary)."""
    return build_rank_inputs(paths, maps, weights.min_name_chars, weights.max_definers)


def _file_graph(
    inputs: RankInputs, question: Question, weights: RankWeights
) -> tuple[Edges, np.ndarray]:
    """Files linked user -> definer (weighted by use) and user -> imported module, and the
    uses of each linking name in all files [names] (a definition's inbound uses are these
    less its own file's).

    On arrays: a large repository has ~500k (user, name, definer) links, too many to add up
    one at a time in Python; repeated pairs are summed by the PageRank's bincount."""
    definers, uses = inputs.definers, inputs.uses
    name_weight = _name_weights(definers.names, question.identifiers, weights)
    by_name = _expand(uses, np.sqrt(uses.count) * name_weight[uses.name], definers)
    imports = inputs.imports
    by_import = _expand(imports, np.full(len(imports.name), weights.import_edge), inputs.modules)
    edges = Edges(*(np.concatenate(pair) for pair in zip(by_name, by_import, strict=True)))
    totals = np.bincount(uses.name, weights=uses.count, minlength=len(definers.names))
    return edges, totals.astype(np.int64)


def _expand(
    links: Links, weight: np.ndarray, targets: Targets
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One edge per (link, target file of its name), self-links left out: (src, dst, w)."""
    starts = np.cumsum(targets.degree) - targets.degree
    repeats = targets.degree[links.name]
    first = np.repeat(starts[links.name], repeats)
    within = np.arange(int(repeats.sum())) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    src = np.repeat(links.user, repeats)
    dst = targets.flat[first + within]
    keep = src != dst
    return src[keep], dst[keep], np.repeat(weight, repeats)[keep]


def personalized_pagerank(
    nodes: Sequence[str],
    edges: Mapping[tuple[str, str], float] | Edges,
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
    graph = edges if isinstance(edges, Edges) else Edges.of(nodes, edges)
    src, dst, weight = graph.src, graph.dst, graph.weight
    out = np.bincount(src, weights=weight, minlength=size)
    share = weight / out[src] if len(src) else weight
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


def _name_weights(names: Sequence[str], asked: frozenset[str], w: RankWeights) -> np.ndarray:
    """[names] each linking name's weight: named by the question, private (`_x`), or plain."""
    return np.array(
        [w.asked_name if n in asked else w.private_name if n[:1] == "_" else 1.0 for n in names]
    )


def _part_start_pattern(terms: frozenset[str]) -> re.Pattern[str] | None:
    """Finds a term (any case) where a part of a name can start: not right after a
    lower-case letter unless it starts upper-case (`Rate` in `learningRate`, not `rat` in
    `generate`). A term is a prefix of a part, so a name without such a find holds none."""
    if not terms:
        return None
    alternatives = "|".join(map(re.escape, sorted(terms)))
    return re.compile(f"(?:(?<![a-z])|(?=[A-Z]))(?i:{alternatives})")


class _Inbound:
    """How often the files other than one use a linking name (a definition's inbound uses)."""

    def __init__(self, inputs: RankInputs, totals: np.ndarray) -> None:
        names = inputs.definers.names
        self.position = dict(zip(names, range(len(names)), strict=True))
        """Linking name -> its position."""
        self.totals = totals.tolist()
        """[names] uses of each in all files."""
        self._links = inputs.uses

    def own(self, file: int) -> dict[int, int]:
        """Linking name's position -> its uses in `file` (index)."""
        links = self._links  # in file order: one file's uses are one run
        bounds = np.array([file, file + 1], dtype=links.user.dtype)  # no cast of `user`
        start, end = np.searchsorted(links.user, bounds).tolist()
        names, counts = links.name[start:end].tolist(), links.count[start:end].tolist()
        return dict(zip(names, counts, strict=True))


def _rank_definitions(
    definitions: Mapping[str, tuple[Definition, ...]],
    top: Sequence[tuple[str, float]],
    position: Mapping[str, int],
    inbound: _Inbound,
    question: Question,
) -> tuple[RankedDefinition, ...]:
    """A definition ranks by its file, how often other files use it, and how many question
    terms its name holds (a name where no term starts a part is not split: most).

    One flat loop over ~20k definitions on a large repository, so nothing is called per
    definition that need not be."""
    asked = {name.lower() for name in question.identifiers}
    terms = question.terms
    any_term = _part_start_pattern(terms)
    where, totals = inbound.position, inbound.totals
    ranked: list[RankedDefinition] = []
    order: list[tuple[float, str, int]] = []
    for path, base in top:
        found = definitions.get(path)
        if found is None:
            continue
        own = inbound.own(position[path])
        for definition in found:
            name = definition.name
            lower = name.lower()
            match = 0
            if any_term is not None and any_term.search(name) is not None:
                match = len({stem(part) for part in split_identifier(name)} & terms)
            if lower in asked:
                match += 3
            at = where.get(name)
            uses = 0 if at is None else totals[at] - own.get(at, 0)
            private = 0.5 if name[:1] == "_" else 1.0
            score = base * (1 + math.log1p(uses)) * (1 + match) * private
            ranked.append(RankedDefinition(path, definition, score, match))
            order.append((-score, path, definition.start))
    return tuple(ranked[i] for i in sorted(range(len(ranked)), key=order.__getitem__))
