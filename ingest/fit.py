"""The longest prefix of a list whose rendered text fits a token budget, in a few counts.

Counting is what costs: a repo map of thousands of definitions is tens of kilobytes, and
bisection counts a dozen such texts. Tokens grow almost in proportion to characters, and
the characters of every prefix are known without rendering it, so the next prefix to count
is interpolated between the nearest counted ones that fit and that do not (aiming a little
short, so the search closes in from below). It stops when what is left unused is a sliver
of the budget; 3-4 counts on a repo map.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

FIT_SLACK = 0.01
"""Stop once the best fitting prefix leaves less than this share of the budget unused."""
AIM = 0.99
"""Aim at this share of what interpolation predicts, to land under the budget."""
MAX_COUNTS = 8
CHARS_PER_TOKEN_GUESS = 4.0
"""Before anything is counted: code and English run 3.5-4.5 characters per token."""


def longest_prefix(
    chars: Sequence[int], budget: int, measure: Callable[[int], int]
) -> tuple[int, int] | None:
    """`(n, measure(n))` for the longest prefix found whose tokens fit `budget`, or None.

    `chars[n - 1]`: characters of the text of the first n items (non-decreasing);
    `measure(n)`: its tokens. Only an n that was measured within the budget is returned."""
    low, low_tokens = 0, 0  # no items: fits
    high, high_tokens = len(chars) + 1, -1  # past the end: never fits (tokens unknown)
    best: tuple[int, int] | None = None
    for _ in range(MAX_COUNTS):
        if high - low <= 1 or (best is not None and budget - low_tokens < FIT_SLACK * budget):
            break
        target = _target_chars(chars, budget, (low, low_tokens), (high, high_tokens))
        n = min(max(bisect.bisect_right(chars, target), low + 1), high - 1)
        tokens = measure(n)
        if tokens <= budget:
            low, low_tokens = n, tokens
            best = (n, tokens)
        else:
            high, high_tokens = n, tokens
    return best


def _target_chars(
    chars: Sequence[int], budget: int, low: tuple[int, int], high: tuple[int, int]
) -> float:
    """Characters that should hold `budget` tokens, by the straight line through the
    counted points (`high` tokens -1: not counted yet)."""
    low_chars = chars[low[0] - 1] if low[0] else 0
    if high[1] >= 0:
        per_token = (chars[high[0] - 1] - low_chars) / max(high[1] - low[1], 1)
    elif low[1] > 0:
        per_token = low_chars / low[1]
    else:
        per_token = CHARS_PER_TOKEN_GUESS
    return low_chars + AIM * (budget - low[1]) * per_token
