"""A plan, as data, for summarizing a long document with a model of limited context.

One pass when the whole document fits the budget; otherwise a map over sections (split or
merged so each step's pages fit a chunk budget), then a tree of reduce steps, each joining
as many summaries as fit a chunk budget, until one remains. Every step keeps the pages it
covers so the final summary can still cite pages. The engine runs the plan; this module
only decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import CountTokens
from .errors import BudgetError
from .pdf import PdfDocument, PdfPage
from .pdf_pack import render_page


@dataclass(frozen=True, slots=True)
class PagePart:
    """Lines `start_line`..`end_line` (1-based) of page `page`'s text."""

    page: int
    start_line: int
    end_line: int


@dataclass(frozen=True, slots=True)
class MapStep:
    """Summarize these page parts (a section, or a piece of one) on their own."""

    id: str
    title: str
    parts: tuple[PagePart, ...]
    tokens: int

    @property
    def pages(self) -> tuple[int, int]:
        return self.parts[0].page, self.parts[-1].page


@dataclass(frozen=True, slots=True)
class ReduceStep:
    """Join the summaries of `inputs` (step ids) into one; covers pages `pages`."""

    id: str
    inputs: tuple[str, ...]
    pages: tuple[int, int]


@dataclass(frozen=True, slots=True)
class SummaryPlan:
    """`maps` run first (independently), then `reduces` in order; `final` is the answer's id.

    A one-pass plan has one map step over every page and no reduce step.
    """

    maps: tuple[MapStep, ...]
    reduces: tuple[ReduceStep, ...]
    final: str

    @property
    def single_pass(self) -> bool:
        return len(self.maps) == 1 and not self.reduces


@dataclass(frozen=True, slots=True)
class PlanConfig:
    budget: int
    """Tokens of document text the model may read in one call."""
    chunk_budget: int
    """Tokens of input for one map or reduce step (at most `budget`)."""
    summary_tokens: int
    """The longest summary one step writes."""

    def __post_init__(self) -> None:
        if not 0 < self.chunk_budget <= self.budget:
            raise BudgetError(f"need 0 < chunk budget <= budget: {self}")
        if not 0 < 2 * self.summary_tokens <= self.chunk_budget:
            raise BudgetError(f"a chunk must hold at least two summaries: {self}")


def plan_summary(
    document: PdfDocument, config: PlanConfig, count_tokens: CountTokens
) -> SummaryPlan:
    """Decide how to summarize `document` within `config`'s budgets."""
    pages = [page for page in document.pages if page.has_text]
    if not pages:
        raise BudgetError("the document has no text to summarize (scanned pages only?)")
    tokens = {page.number: count_tokens(render_page(page)) for page in pages}
    whole = [PagePart(page.number, 1, _lines(page)) for page in pages]
    if sum(tokens.values()) <= config.budget:
        return SummaryPlan(
            (MapStep("m0", "whole document", tuple(whole), sum(tokens.values())),), (), "m0"
        )
    maps = _map_steps(document, pages, tokens, config, count_tokens)
    reduces = _reduce_steps(maps, config)
    return SummaryPlan(maps, reduces, reduces[-1].id if reduces else maps[-1].id)


def _lines(page: PdfPage) -> int:
    return max(page.text.count("\n") + 1, 1)


def _groups(document: PdfDocument, pages: list[PdfPage]) -> list[tuple[str, list[PdfPage]]]:
    """Pages grouped by top-level section (in page order); one group per page without any."""
    top = sorted((s for s in document.sections if s.level == 1), key=lambda s: s.start_page)
    by_number = {page.number: page for page in pages}
    groups: list[tuple[str, list[PdfPage]]] = []
    covered: set[int] = set()
    for section in top:
        members = [
            by_number[n]
            for n in range(section.start_page, section.end_page + 1)
            if n in by_number and n not in covered
        ]
        covered.update(page.number for page in members)
        if members:
            groups.append((section.title, members))
    groups += [(f"p. {page.number}", [page]) for page in pages if page.number not in covered]
    return sorted(groups, key=lambda group: group[1][0].number)


def _map_steps(
    document: PdfDocument,
    pages: list[PdfPage],
    tokens: dict[int, int],
    config: PlanConfig,
    count_tokens: CountTokens,
) -> tuple[MapStep, ...]:
    """Whole sections where they fit, merged with neighbours while they fit; split otherwise."""
    steps: list[tuple[str, list[PagePart], int]] = []
    for title, members in _groups(document, pages):
        for part, part_tokens in _parts(members, tokens, config.chunk_budget, count_tokens):
            last = steps[-1] if steps else None
            if last is not None and last[2] + part_tokens <= config.chunk_budget:
                steps[-1] = (
                    last[0] if title in last[0] else f"{last[0]}; {title}",
                    [*last[1], part],
                    last[2] + part_tokens,
                )
            else:
                steps.append((title, [part], part_tokens))
    return tuple(
        MapStep(f"m{i}", title, tuple(parts), total)
        for i, (title, parts, total) in enumerate(steps)
    )


def _parts(
    members: list[PdfPage], tokens: dict[int, int], chunk_budget: int, count_tokens: CountTokens
) -> list[tuple[PagePart, int]]:
    """Whole pages, or a page cut into line ranges when it alone exceeds the chunk budget."""
    parts: list[tuple[PagePart, int]] = []
    for page in members:
        if tokens[page.number] <= chunk_budget:
            parts.append((PagePart(page.number, 1, _lines(page)), tokens[page.number]))
            continue
        lines = page.text.split("\n")
        start = 0
        while start < len(lines):
            end = start + 1
            while (
                end < len(lines) and count_tokens("\n".join(lines[start : end + 1])) <= chunk_budget
            ):
                end += 1
            piece = count_tokens("\n".join(lines[start:end]))
            parts.append((PagePart(page.number, start + 1, end), piece))
            start = end
    return parts


def _reduce_steps(maps: tuple[MapStep, ...], config: PlanConfig) -> tuple[ReduceStep, ...]:
    """A tree of joins: each reduce takes as many summaries as fit the chunk budget."""
    fan_in = max(2, config.chunk_budget // config.summary_tokens)
    level: list[tuple[str, tuple[int, int]]] = [(step.id, step.pages) for step in maps]
    reduces: list[ReduceStep] = []
    while len(level) > 1:
        next_level: list[tuple[str, tuple[int, int]]] = []
        for start in range(0, len(level), fan_in):
            group = level[start : start + fan_in]
            if len(group) == 1:
                next_level.append(group[0])
                continue
            step = ReduceStep(
                f"r{len(reduces)}", tuple(i for i, _ in group), (group[0][1][0], group[-1][1][1])
            )
            reduces.append(step)
            next_level.append((step.id, step.pages))
        level = next_level
    return tuple(reduces)


def step_text(document: PdfDocument, step: MapStep) -> str:
    """The input text of a map step, with `### p. N` headers so summaries can cite pages."""
    by_number = {page.number: page for page in document.pages}
    pieces: list[str] = []
    for part in step.parts:
        page = by_number[part.page]
        lines = page.text.split("\n")[part.start_line - 1 : part.end_line]
        pieces.append(render_page(PdfPage(page.number, "\n".join(lines), True)))
    return "".join(pieces)
