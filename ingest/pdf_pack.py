"""Pack a PDF's pages into a `Context` that cites pages.

Without a question the pages go in order until the budget is met; with one, the pages that
match it best are chosen first and then put back in page order, so the text still reads
in sequence.
"""

from __future__ import annotations

import math
from collections import Counter

from .context import MAX_CHARS_PER_TOKEN, Chunk, Context, CountTokens, Dropped
from .errors import BudgetError
from .pdf import PdfDocument, PdfPage
from .terms import Question, terms_of


def render_page(page: PdfPage, title: str | None = None) -> str:
    """How one page appears in the prompt: a `### p. N` header (with its section), then text."""
    heading = f"### p. {page.number}" + (f" — {title}" if title else "")
    return f"{heading}\n{page.text}\n\n"


def section_titles(document: PdfDocument) -> dict[int, str]:
    """The innermost section title in force on each page."""
    titles: dict[int, str] = {}
    for section in sorted(document.sections, key=lambda s: (s.level, s.start_page)):
        for number in range(section.start_page, section.end_page + 1):
            titles[number] = section.title
    return titles


def pack_pages(
    document: PdfDocument, question: Question, budget: int, count_tokens: CountTokens
) -> Context:
    """Pages of `document` within `budget` tokens, cited as pages."""
    if budget <= 0:
        raise BudgetError(f"the token budget must be positive, got {budget}")
    titles = section_titles(document)
    readable = [page for page in document.pages if page.has_text]
    order = _by_relevance(readable, question) if not question.empty else readable
    chosen: dict[int, tuple[str, int]] = {}
    dropped = [Dropped(f"p. {n}", "no text layer (scanned?)") for n in document.pages_without_text]
    left = budget
    for page in order:
        text = render_page(page, titles.get(page.number))
        tokens = count_tokens(text) if len(text) <= left * MAX_CHARS_PER_TOKEN else left + 1
        if tokens <= left:
            chosen[page.number] = (text, tokens)
            left -= tokens
        else:
            dropped.append(Dropped(f"p. {page.number}", "over budget"))
    numbers = sorted(chosen)
    text = "".join(chosen[n][0] for n in numbers)
    total = count_tokens(text) if text else 0
    while total > budget:
        last = numbers.pop()
        dropped.append(Dropped(f"p. {last}", "over budget after the final count"))
        text = "".join(chosen[n][0] for n in numbers)
        total = count_tokens(text) if text else 0
    chunks = tuple(Chunk(chosen[n][1], page=n, kind="page") for n in numbers)
    return Context(text, total, budget, chunks, tuple(sorted(dropped, key=_page_key)))


def _page_key(item: Dropped) -> int:
    return int(item.path.removeprefix("p. "))


def _by_relevance(pages: list[PdfPage], question: Question) -> list[PdfPage]:
    """Pages by a BM25-style match to the question's terms; ties keep page order."""
    counts = [Counter(t for t in terms_of(page.text) if t in question.terms) for page in pages]
    doc_freq = Counter(term for count in counts for term in count)
    total = len(pages)
    idf = {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for t, n in doc_freq.items()}
    scores = [sum(idf[t] * c / (c + 1.0) for t, c in count.items()) for count in counts]
    ranked = sorted(range(total), key=lambda i: (-scores[i], pages[i].number))
    return [pages[i] for i in ranked]
