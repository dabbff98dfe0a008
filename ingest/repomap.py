"""A repo map: the best-ranked definitions' signatures, grouped by file, fitted to a budget.

Like Aider's map it shows the shape of the code the model does not see in full: each line
is `line│ signature`, indented under its class, so an answer can still cite `path:line`.
The number of definitions shown is about the largest that fits, found by interpolating on
the map's characters (fit.py) up to the most whose characters alone could fit.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .context import MAX_CHARS_PER_TOKEN, CountTokens
from .fit import longest_prefix
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
        lines += (_line(item) for item in sorted(items, key=lambda r: r.definition.start))
    return "".join(lines) + "\n"


def _line(item: RankedDefinition) -> str:
    indent = "    " if item.definition.parent else "  "
    return f"{indent}{item.definition.start}│ {item.definition.signature}\n"


def map_chars(definitions: Sequence[RankedDefinition]) -> list[int]:
    """Characters of `render_map` of each prefix of `definitions` (without rendering it)."""
    total = len(MAP_HEADER) + 1
    seen: set[str] = set()
    found: list[int] = []
    for item in definitions:
        if item.path not in seen:
            seen.add(item.path)
            total += len(item.path) + 2
        total += len(_line(item))
        found.append(total)
    return found


def fit_map(
    ranked: Sequence[RankedDefinition],
    budget: int,
    count_tokens: CountTokens,
    exclude: Collection[str] = (),
) -> RepoMap | None:
    """About the largest map of top-ranked definitions (outside `exclude`) within `budget`
    tokens (fit.py: it stops within 1% of the budget)."""
    candidates = [r for r in ranked if r.path not in exclude][:MAX_CANDIDATES]
    chars = map_chars(candidates)
    # a map of more definitions than this has more characters than any fitting text
    chars = chars[: bisect.bisect_right(chars, budget * MAX_CHARS_PER_TOKEN)]
    texts: dict[int, str] = {}

    def measure(n: int) -> int:
        texts[n] = render_map(candidates[:n])
        return count_tokens(texts[n])

    found = longest_prefix(chars, budget, measure)
    if found is None:
        return None
    n, tokens = found
    shown = candidates[:n]
    paths = tuple(dict.fromkeys(r.path for r in shown))
    listed = frozenset((r.path, r.definition.start) for r in shown)
    return RepoMap(texts[n], tokens, paths, listed)
