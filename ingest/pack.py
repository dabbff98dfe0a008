"""The ranked packer: a repository into a cited `Context` that never exceeds its budget.

Order of the prompt, each part bounded: the README and top-level docs, the repo map, the
full text of the most relevant files (or, for a file too large, its most relevant
definitions), then the signatures of files that did not fit. Budget still left after that
goes to the full text of the files ranked too low for it, best first, in place of their
signatures: a small repository is packed whole. Every part is counted with the model's
tokenizer; the whole text is counted again at the end and trimmed from the back if merges
across part borders pushed it over.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from .codemap import Definition
from .context import MAX_CHARS_PER_TOKEN, Chunk, Context, CountTokens, Dropped
from .errors import BudgetError
from .fit import longest_prefix
from .languages import is_doc
from .path_order import line_count, render_file
from .rank import RankedDefinition, Ranking
from .repomap import fit_map
from .walk import SourceFile, WalkResult

SAMPLE_CHARS = 4096
SAMPLE_WINDOWS = 3
"""A long text's tokens are estimated from this many windows spread over it, together
`SAMPLE_CHARS` long."""
SURELY_OVER = 1.25
"""A text whose sampled estimate exceeds the limit this many times over is not counted: on
300 large Python files the estimate was at most 1.21x the true count (median 1.02x)."""
DEFS_TRIED = 60
"""Definitions of one large file that are tried, best first."""
UNMATCHED_DEFS = 4
"""Of a large file, definitions that match no question term are taken only this many."""
SECTION_DOCS, SECTION_MAP, SECTION_FILES, SECTION_SIGNATURES = range(4)
SIGNATURES_MIN_TOKENS = 8
"""Below this many tokens left, no file's headers fit: the signature pass stops."""


@dataclass(frozen=True, slots=True)
class PackConfig:
    """How a budget is shared between the parts of the prompt (shares of the budget)."""

    budget: int
    docs_share: float = 0.10
    map_share: float = 0.12
    big_file_share: float = 0.30
    """The most one file's full text may take; larger files give definitions instead."""
    definitions_share: float = 0.15
    """The most one large file's definitions may take."""
    full_text_min_score: float = 0.02
    """Files scoring below this fraction of the best get signatures, not full text."""
    min_part_tokens: int = 24

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise BudgetError(f"the token budget must be positive, got {self.budget}")
        shares = (
            self.docs_share,
            self.map_share,
            self.big_file_share,
            self.definitions_share,
            self.full_text_min_score,
        )
        if not all(0 <= share <= 1 for share in shares):
            raise ValueError(f"shares must lie in [0, 1]: {self}")


@dataclass(frozen=True, slots=True)
class _Part:
    text: str
    chunk: Chunk
    section: int
    group: int


class _Packer:
    """Collects parts under a running budget; parts are put in prompt order at the end."""

    def __init__(self, budget: int, count_tokens: CountTokens) -> None:
        self.left = budget
        self.count = count_tokens
        self.parts: list[_Part] = []
        self.shown: dict[str, int] = {}

    def try_add(self, text: str, section: int, cap: int, chunk: Chunk) -> Chunk | None:
        """Add `text` when it fits in `cap` and the budget; count it only when it might."""
        limit = min(cap, self.left)
        if limit <= 0 or len(text) > limit * MAX_CHARS_PER_TOKEN or self._surely_over(text, limit):
            return None
        tokens = self.count(text)
        if tokens > limit:
            return None
        counted = Chunk(tokens, chunk.path, chunk.start, chunk.end, chunk.page, chunk.kind)
        path = chunk.path or ""
        group = self.shown.setdefault(path, len(self.shown))
        self.parts.append(_Part(text, counted, section, group))
        self.left -= tokens
        return counted

    def take_back(self, parts: list[_Part]) -> None:
        """Remove `parts` (to try something in their place) and refund their tokens."""
        for part in parts:
            self.parts.remove(part)
            self.left += part.chunk.tokens

    def put_back(self, parts: list[_Part]) -> None:
        self.parts.extend(parts)
        self.left -= sum(part.chunk.tokens for part in parts)

    def _surely_over(self, text: str, limit: int) -> bool:
        """Counting a long text costs; a sample of it shows when it is far over the limit."""
        if len(text) <= 2 * SAMPLE_CHARS:
            return False
        width, step = SAMPLE_CHARS // SAMPLE_WINDOWS, len(text) // SAMPLE_WINDOWS
        sample = "".join(text[i * step : i * step + width] for i in range(SAMPLE_WINDOWS))
        return self.count(sample) / len(sample) * len(text) > SURELY_OVER * limit


def render_lines(path: str, lines: Sequence[str], start: int) -> str:
    """Lines `start`.. of a file under the same header `render_file` uses."""
    body = "".join(lines)
    body = body if body.endswith("\n") else body + "\n"
    return f"### {path} (lines {start}-{start + len(lines) - 1})\n{body}\n"


def pack_repository(
    walked: WalkResult,
    definitions: Mapping[str, tuple[Definition, ...]],
    ranking: Ranking,
    config: PackConfig,
    count_tokens: CountTokens,
) -> Context:
    """Pack the ranked files of `walked` into at most `config.budget` tokens.

    `definitions`: path -> those of each file that defines something."""
    packer = _Packer(config.budget, count_tokens)
    docs = _top_docs(walked.files, ranking)
    _add_docs(packer, docs, int(config.docs_share * config.budget), config.min_part_tokens)
    map_reserve = int(config.map_share * config.budget) if ranking.definitions else 0
    packer.left -= map_reserve
    below_cut = _add_files(packer, walked.files, ranking, config)
    packer.left += map_reserve
    shown = set(packer.shown)
    repo_map = fit_map(ranking.definitions, min(packer.left, map_reserve), count_tokens, shown)
    mapped = set(repo_map.paths) if repo_map is not None else set()
    listed = repo_map.listed if repo_map is not None else frozenset()
    if repo_map is not None:
        where = Chunk(0, "(repo map)", 1, line_count(repo_map.text), kind="map")
        packer.try_add(repo_map.text, SECTION_MAP, repo_map.tokens, where)
    _add_signatures(packer, definitions, ranking, shown, listed)
    _fill_with_full_text(packer, walked.files, ranking, below_cut, config)
    covered = set(packer.shown) | mapped
    dropped = list(walked.skipped)
    dropped += [
        Dropped(path, _why_left_out(path, definitions, below_cut))
        for path, _ in ranking.files
        if path not in covered
    ]
    return _finish(packer, config.budget, dropped)


def _why_left_out(path: str, definitions: Collection[str], below_cut: set[str]) -> str:
    """A file ranked too low for full text shows only its signatures; without any, nothing.

    Every other file left out was tried and did not fit."""
    if path in below_cut and path not in definitions:
        return "ranked below the cut for full text, no definitions to list"
    return "over budget"


def _top_docs(files: Sequence[SourceFile], ranking: Ranking) -> list[SourceFile]:
    """Prose files at the top level: README first, then the others by rank."""
    order = {path: index for index, (path, _) in enumerate(ranking.files)}
    docs = [file for file in files if "/" not in file.path and is_doc(file.path)]
    return sorted(docs, key=lambda f: (not f.path.lower().startswith("readme"), order[f.path]))


def _add_docs(packer: _Packer, docs: list[SourceFile], cap: int, min_tokens: int) -> None:
    spent = 0
    for doc in docs:
        left = cap - spent
        if left < min_tokens:
            return
        where = Chunk(0, doc.path, 1, line_count(doc.text), kind="doc")
        chunk = packer.try_add(render_file(doc.path, doc.text), SECTION_DOCS, left, where)
        if chunk is None:
            chunk = _add_head(packer, doc, left, min_tokens)
        spent += chunk.tokens if chunk is not None else 0


def _add_head(packer: _Packer, doc: SourceFile, cap: int, min_tokens: int) -> Chunk | None:
    """About the longest first part of `doc` that fits in `cap` (fit.py, over its lines)."""
    lines = doc.text.splitlines(keepends=True)
    limit = min(cap, packer.left)
    header = len(render_lines(doc.path, [], 1))
    chars = [header + n for n in itertools.accumulate(map(len, lines))]
    chars = chars[: bisect.bisect_right(chars, limit * MAX_CHARS_PER_TOKEN)]
    texts: dict[int, str] = {}

    def measure(n: int) -> int:
        texts[n] = render_lines(doc.path, lines[:n], 1)
        return packer.count(texts[n])

    found = longest_prefix(chars, limit, measure)
    if found is None or found[1] < min_tokens:
        return None
    n = found[0]
    return packer.try_add(texts[n], SECTION_DOCS, cap, Chunk(0, doc.path, 1, n, kind="doc"))


def _add_files(
    packer: _Packer, files: Sequence[SourceFile], ranking: Ranking, config: PackConfig
) -> set[str]:
    """Full text of the best files; the best definitions of those too large for a share.

    Returns the files not tried because they rank below `full_text_min_score`."""
    by_path = {file.path: file for file in files}
    cap = int(config.big_file_share * config.budget)
    definitions_cap = int(config.definitions_share * config.budget)
    top_score = ranking.files[0][1] if ranking.files else 0.0
    defs_of = _definitions_by_file(ranking.definitions)
    for position, (path, score) in enumerate(ranking.files):
        if packer.left < config.min_part_tokens:
            return set()
        if score < config.full_text_min_score * top_score:
            return {p for p, _ in ranking.files[position:]}
        if path in packer.shown:
            continue
        file = by_path[path]
        where = Chunk(0, path, 1, line_count(file.text), kind="file")
        if packer.try_add(render_file(path, file.text), SECTION_FILES, cap, where) is None:
            _add_definitions(packer, file, defs_of.get(path, []), definitions_cap)
    return set()


def _fill_with_full_text(
    packer: _Packer,
    files: Sequence[SourceFile],
    ranking: Ranking,
    below_cut: set[str],
    config: PackConfig,
) -> None:
    """Budget left at the end goes to the full text of the files ranked below the cut, best
    first; a file's signatures give way to its full text only when that fits."""
    by_path = {file.path: file for file in files}
    cap = int(config.big_file_share * config.budget)
    parts_of: dict[str, list[_Part]] = {}
    for part in packer.parts:
        parts_of.setdefault(part.chunk.path or "", []).append(part)
    for path, _ in ranking.files:
        if packer.left < config.min_part_tokens:
            return
        if path not in below_cut:
            continue
        own = parts_of.get(path, [])
        if any(part.chunk.kind != "signatures" for part in own):
            continue
        packer.take_back(own)
        file = by_path[path]
        where = Chunk(0, path, 1, line_count(file.text), kind="file")
        if packer.try_add(render_file(path, file.text), SECTION_FILES, cap, where) is None:
            packer.put_back(own)


def _definitions_by_file(ranked: Sequence[RankedDefinition]) -> dict[str, list[RankedDefinition]]:
    grouped: dict[str, list[RankedDefinition]] = {}
    for item in ranked:
        grouped.setdefault(item.path, []).append(item)
    return grouped


def _add_definitions(
    packer: _Packer, file: SourceFile, ranked: list[RankedDefinition], cap: int
) -> None:
    """The best definitions of one large file, each whole, none inside another chosen one.

    Definitions whose names match the question come first; only a few others follow.
    """
    lines = file.text.splitlines(keepends=True)
    chosen: list[tuple[int, int]] = []
    spent = 0
    matched = [item for item in ranked if item.matches]
    unmatched = [item for item in ranked if not item.matches][:UNMATCHED_DEFS]
    for item in (matched + unmatched)[:DEFS_TRIED]:
        start, end = item.definition.start, item.definition.end
        if any(s <= start <= e or start <= s <= end for s, e in chosen):
            continue
        text = render_lines(file.path, lines[start - 1 : end], start)
        where = Chunk(0, file.path, start, end, kind="definition")
        chunk = packer.try_add(text, SECTION_FILES, cap - spent, where)
        if chunk is not None:
            chosen.append((start, end))
            spent += chunk.tokens


def _add_signatures(
    packer: _Packer,
    definitions: Mapping[str, tuple[Definition, ...]],
    ranking: Ranking,
    shown: set[str],
    listed: frozenset[tuple[str, int]],
) -> None:
    """Top-level definition headers of the files not shown otherwise, best files first.

    Only files whose definitions the ranking covers are tried (the best ranked; a file
    further down would seldom fit in what is left, and reading them all costs). A file the
    repo map names still gets its headers when the map leaves some out."""
    ranked = {item.path for item in ranking.definitions}
    for path, _ in ranking.files:
        if packer.left < SIGNATURES_MIN_TOKENS:
            return
        if path in shown or path not in ranked:
            continue
        top = [d for d in definitions[path] if not d.parent] or list(definitions[path])
        if all((path, d.start) in listed for d in top):
            continue
        listing = "".join(f"  {d.start}│ {d.signature}\n" for d in top)
        text = f"### {path} (signatures)\n{listing}\n"
        where = Chunk(0, path, top[0].start, top[-1].end, kind="signatures")
        packer.try_add(text, SECTION_SIGNATURES, packer.left, where)


def _finish(packer: _Packer, budget: int, dropped: list[Dropped]) -> Context:
    """Put the parts in prompt order, count the whole, and trim from the back if over."""
    parts = sorted(packer.parts, key=lambda p: (p.section, p.group, p.chunk.start or 0))
    text = "".join(part.text for part in parts)
    tokens = packer.count(text) if text else 0
    while tokens > budget:
        last = parts.pop()
        dropped.append(Dropped(last.chunk.path or "", "over budget after the final count"))
        text = "".join(part.text for part in parts)
        tokens = packer.count(text) if text else 0
    return Context(
        text=text,
        tokens=tokens,
        budget=budget,
        chunks=tuple(part.chunk for part in parts),
        dropped=tuple(dropped),
    )
