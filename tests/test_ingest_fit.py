"""Fitting a prefix to a budget by interpolation: never over, close to the longest, few counts."""

from __future__ import annotations

import itertools
import random

import pytest
from ingest_support import standin_count_tokens

from nsa_assist.ingest.codemap import Definition
from nsa_assist.ingest.fit import FIT_SLACK, MAX_COUNTS, longest_prefix
from nsa_assist.ingest.rank import RankedDefinition
from nsa_assist.ingest.repomap import fit_map, map_chars, render_map


def _items(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    words = ["alpha", "beta_gamma", "(", ")", "->", "delta:", "int", "x", "==", "  "]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) + "\n" for _ in range(n)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [1, 7, 50, 400, 3000, 10**6])
def test_never_over_and_within_the_slack_of_the_longest(seed: int, budget: int) -> None:
    items = _items(seed, 500)
    chars = list(itertools.accumulate(map(len, items)))
    # lines count apart: the tokens of every prefix, summed
    tokens_of = list(itertools.accumulate(map(standin_count_tokens, items)))
    counted: list[int] = []

    def measure(n: int) -> int:
        counted.append(n)
        return tokens_of[n - 1]

    found = longest_prefix(chars, budget, measure)
    counts = len(counted)
    assert counts <= MAX_COUNTS
    fitting = [n for n in range(1, len(items) + 1) if tokens_of[n - 1] <= budget]
    if not fitting:
        assert found is None
        return
    n, tokens = found
    assert tokens == tokens_of[n - 1] <= budget
    longest = max(fitting)
    assert n == longest or budget - tokens < FIT_SLACK * budget or counts == MAX_COUNTS


def test_a_map_lands_within_one_percent_in_a_few_counts() -> None:
    rng = random.Random(3)
    ranked = [
        RankedDefinition(
            f"pkg/mod_{i // 7}.py",
            Definition(
                f"name_{i}", "function", f"def name_{i}(a, b={rng.random():.3f}):", i, i + 2
            ),
            1.0 / (i + 1),
        )
        for i in range(3000)
    ]
    assert map_chars(ranked[:50])[-1] == len(render_map(ranked[:50]))
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return standin_count_tokens(text)

    repo_map = fit_map(ranked, 6000, count)
    assert repo_map is not None and 0.99 * 6000 <= repo_map.tokens <= 6000
    assert repo_map.tokens == standin_count_tokens(repo_map.text)
    assert len(calls) <= 4  # bisection took ~12
