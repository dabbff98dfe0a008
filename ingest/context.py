"""Typed records that leave the ingest stage: a packed `Context` and its citations."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

CountTokens = Callable[[str], int]
"""Counts tokens with the model's own tokenizer (built from its tokenizer.json)."""
MAX_CHARS_PER_TOKEN = 10.0
"""No tokenizer packs more chars per token: longer text cannot fit, so packers skip counting it."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One cited piece of the context: lines `start`..`end` of `path`, or a PDF `page`."""

    tokens: int
    path: str | None = None
    start: int | None = None
    end: int | None = None
    page: int | None = None
    kind: str = "file"
    """What the chunk holds: "file" (full text), "doc", "map" (repo map), "definition" (one
    definition of a large file), "signatures" (a file's definition headers), "page"."""

    def citation(self) -> str:
        if self.page is not None:
            return f"p. {self.page}"
        return f"{self.path}:{self.start}-{self.end}"


@dataclass(frozen=True, slots=True)
class Dropped:
    """Something left out of the context, and why (shown to the user)."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Context:
    """The prompt text built from a source, with its citation map and what was left out."""

    text: str
    tokens: int
    budget: int
    chunks: tuple[Chunk, ...] = ()
    dropped: tuple[Dropped, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        assert self.tokens <= self.budget, "a packed context never exceeds its budget"

    @property
    def sources(self) -> list[str]:
        """Paths (or page labels) that made it into the context, in order, without repeats."""
        seen: dict[str, None] = {}
        for chunk in self.chunks:
            seen.setdefault(chunk.path if chunk.path is not None else f"page {chunk.page}")
        return list(seen)

    def cited_in(self, answer: str) -> tuple[Chunk, ...]:
        """The file chunks whose path the answer names, in the order it first names them (a
        file's several chunks in context order). Small models often cite `path` without its
        line; these chunks are the lines of that file the model was shown."""
        first: dict[str, int] = {}
        for chunk in self.chunks:
            if chunk.page is not None or chunk.kind == "map" or chunk.path in first:
                continue
            # the whole path, not part of a longer one (`a/b.py` is not cited by `xa/b.pyc`)
            found = re.search(rf"(?<![\w./-]){re.escape(chunk.path)}(?![\w/]|\.\w)", answer)
            if found:
                first[chunk.path] = found.start()
        order = sorted(first, key=first.get)
        return tuple(c for path in order for c in self.chunks if c.path == path)
