"""Our array PageRank against networkx's, which stays the reference it must match."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from nsa_assist.ingest.rank import personalized_pagerank


def _random_graph(rng: random.Random, size: int, edges: int) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for _ in range(edges):
        a, b = rng.randrange(size), rng.randrange(size)
        if a != b:
            found[(f"n{a}", f"n{b}")] = rng.uniform(0.1, 5.0)
    return found


@pytest.mark.parametrize(
    ("size", "edges", "personal_share"),
    [(1, 0, 0.0), (30, 10, 0.2), (300, 2000, 0.05), (300, 2000, 0.0)],
)
def test_matches_networkx(size: int, edges: int, personal_share: float) -> None:
    rng = random.Random()
    nodes = [f"n{i}" for i in range(size)]
    graph_edges = _random_graph(rng, size, edges)
    personal = {n: rng.uniform(0.5, 3.0) for n in nodes if rng.random() < personal_share} or None
    ours = personalized_pagerank(nodes, graph_edges, personal, 0.85)
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_weighted_edges_from((a, b, w) for (a, b), w in graph_edges.items())
    reference = nx.pagerank(graph, alpha=0.85, personalization=personal, weight="weight")
    assert set(ours) == set(reference)
    assert sum(ours.values()) == pytest.approx(1.0, abs=1e-6)
    for node in nodes:
        assert ours[node] == pytest.approx(reference[node], abs=1e-5), node


def test_no_nodes() -> None:
    assert personalized_pagerank([], {}, None, 0.85) == {}
