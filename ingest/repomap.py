"""A repo map: the best-ranked definitions' signatures, grouped by file, fitted to a budget.

Like Aider's map it shows the shape of the code the model does not see in full: each line
is `line│ signature`, indented under its class, so an answer can still cite `path:line`.
The number of definitions shown is the largest that fits, found by bisection between
one and the most whose characters alone could fit.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .context import MAX_CHARS_PER_TOKEN, CountTokens
from .rank import RankedDefinition

MAP_HEADER = "### Repository map (definitions by relevance; line│ signature)\n"
MAX_CANDIDATES = 4000
"""Definitions considered at most; keeps bisection cheap on huge repositories."""


@dataclass(frozen=True, slots=True)
class RepoMap:
    """The rendered map, its token count, the files it mentions and the lines it lists."""

    text: str
    tokens: int
    paths: tuple[str, ...]
    listed: frozenset[tuple[str, int]] = frozenset()
    """(path, start line) of each definition shown."""


def render_map(definitions: Sequence[RankedDefinition]) -> str:
    """Group `definitions` by file (files in first-ranked order, lines in order) and render."""
    by_file: dict[str, list[RankedDefinition]] = {}
    for item in definitions:
        by_file.setdefault(item.path, []).append(item)
    lines = [MAP_HEADER]
    for path, items in by_file.items():
        lines.append(f"{path}:\n")
        for item in sorted(items, key=lambda r: r.definition.start):
            indent = "    " if item.definition.parent else "  "
            lines.append(f"{indent}{item.definition.start}│ {item.definition.signature}\n")
    return "".join(lines) + "\n"


def fit_map(
    ranked: Sequence[RankedDefinition],
    budget: int,
    count_tokens: CountTokens,
    exclude: Collection[str] = (),
) -> RepoMap | None:
    """The largest map of top-ranked definitions (outside `exclude`) within `budget` tokens."""
    candidates = [r for r in ranked if r.path not in exclude][:MAX_CANDIDATES]
    # a map of more definitions than this has more characters than any fitting text
    lengths = itertools.accumulate(len(r.definition.signature) + 1 for r in candidates)
    best: RepoMap | None = None
    low, high = 1, bisect.bisect_right(list(lengths), budget * MAX_CHARS_PER_TOKEN)
    while low <= high:
        middle = (low + high) // 2
        text = render_map(candidates[:middle])
        tokens = count_tokens(text)
        if tokens <= budget:
            shown = candidates[:middle]
            paths = tuple(dict.fromkeys(r.path for r in shown))
            listed = frozenset((r.path, r.definition.start) for r in shown)
            best = RepoMap(text, tokens, paths, listed)
            low = middle + 1
        else:
            high = middle - 1
    return best
