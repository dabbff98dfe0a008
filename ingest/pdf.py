"""Read a PDF into clean page texts and sections, with PyMuPDF's plain text extraction.

Per page: text lines in reading order, joined into paragraphs (hyphenated line ends
rejoined, CJK lines joined without a space), lines repeated in the top or bottom band of
many pages (running headers, footers, page numbers) removed, ruled tables rendered as
Markdown. Sections come from the outline (TOC), or from font sizes when there is none.
Pages without a text layer are reported, not guessed at.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pymupdf

from .errors import PdfError

BAND = 0.08
"""Top and bottom share of the page height where running headers and footers live."""
REPEAT_SHARE = 0.3
"""A band line seen on at least this share of pages (and 3 of them) is a header or footer."""
MIN_REPEATS = 3
TABLE_MIN_RULES = 3
"""A ruled table has at least this many horizontal and this many vertical rules."""
MIN_RULE_LENGTH = 8.0
RULE_THICKNESS = 2.0
HEADING_SCALE = 1.15
HEADING_MAX_CHARS = 120
MAX_HEADING_LEVELS = 3
_PAGE_NUMBER = re.compile(r"^\W*(?:page\s*)?(?:\d+|[ivxlcdm]+)(?:\s*(?:of|/)\s*\d+)?\W*$", re.I)
_DIGITS = re.compile(r"\d+")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


@dataclass(frozen=True, slots=True)
class PdfPage:
    """One page's clean text (1-based `number`); `has_text` is False for scans."""

    number: int
    text: str
    has_text: bool


@dataclass(frozen=True, slots=True)
class Section:
    """A titled range of pages, from the outline or from headings in large type."""

    title: str
    level: int
    start_page: int
    end_page: int


@dataclass(frozen=True, slots=True)
class PdfDocument:
    pages: tuple[PdfPage, ...]
    sections: tuple[Section, ...]

    @property
    def pages_without_text(self) -> tuple[int, ...]:
        """Page numbers with no text layer (scanned or blank)."""
        return tuple(page.number for page in self.pages if not page.has_text)


@dataclass(frozen=True, slots=True)
class _Line:
    y0: float
    text: str
    size: float
    block: int
    band: bool


def read_pdf(path: Path, password: str | None = None) -> PdfDocument:
    """Pages and sections of the PDF at `path`; raises `PdfError` when it cannot be read."""
    document = _open(path, password)
    with document:
        outline = document.get_toc(simple=True)
        # font sizes (slower "dict" extraction) are only needed to find headings without a TOC
        read_lines = _page_lines if outline else _sized_page_lines
        raw = [read_lines(page) for page in document]
        tables = [_tables(page) for page in document]
        repeated = _repeated_band_lines(raw)
        pages = tuple(
            _page(number, lines, page_tables, repeated)
            for number, (lines, page_tables) in enumerate(zip(raw, tables, strict=True), start=1)
        )
    sections = _sections_from_outline(outline, len(pages)) or _sections_from_fonts(raw, repeated)
    return PdfDocument(pages, sections)


def _open(path: Path, password: str | None) -> pymupdf.Document:
    if not path.is_file():
        raise PdfError(f"PDF not found: {path}")
    if path.stat().st_size == 0:
        raise PdfError(f"{path.name}: the file is empty")
    try:
        document = pymupdf.open(path, filetype="pdf")
    except (pymupdf.FileDataError, pymupdf.EmptyFileError, RuntimeError) as error:
        raise PdfError(f"{path.name}: not a readable PDF (corrupted?): {error}") from None
    if document.needs_pass:
        if password is None:
            document.close()
            raise PdfError(f"{path.name}: the PDF is encrypted; pass --password to open it")
        if not document.authenticate(password):
            document.close()
            raise PdfError(f"{path.name}: wrong password for the encrypted PDF")
    if document.page_count == 0:
        document.close()
        raise PdfError(f"{path.name}: the PDF has no pages")
    return document


def _page_lines(page: pymupdf.Page) -> list[_Line]:
    """Text lines in reading order (top to bottom, then left to right), positioned by block."""
    height = page.rect.height or 1.0
    lines: list[_Line] = []
    blocks = page.get_text("blocks", sort=True, flags=pymupdf.TEXTFLAGS_TEXT)
    for index, (_, y0, _, y1, text, _, kind) in enumerate(blocks):
        if kind != 0:  # an image block
            continue
        band = y1 < BAND * height or y0 > (1 - BAND) * height
        for row, line in enumerate(text.split("\n")):
            if line.strip():
                lines.append(_Line(y0 + row * 1e-3, line.strip(), 0.0, index, band))
    return lines


def _sized_page_lines(page: pymupdf.Page) -> list[_Line]:
    """Like `_page_lines`, positioned by line and with each line's largest font size."""
    height = page.rect.height or 1.0
    lines: list[_Line] = []
    content = page.get_text("dict", sort=True, flags=pymupdf.TEXTFLAGS_TEXT)
    for index, block in enumerate(content["blocks"]):
        for line in block.get("lines", ()):
            spans = line["spans"]
            text = "".join(span["text"] for span in spans).strip()
            if not text:
                continue
            y0, y1 = line["bbox"][1], line["bbox"][3]
            band = y1 < BAND * height or y0 > (1 - BAND) * height
            size = max(span["size"] for span in spans)
            lines.append(_Line(y0, text, round(size, 1), index, band))
    return lines


def _tables(page: pymupdf.Page) -> list[tuple[pymupdf.Rect, str]]:
    """Ruled tables as (area, Markdown).

    `find_tables` costs about a second per page, so it runs only where the vector drawings
    hold a grid (some vertical and some horizontal rules), and only inside that grid.
    """
    grid = _rule_grid(page.get_cdrawings())
    if grid is None:
        return []
    pymupdf.no_recommend_layout()  # else find_tables prints advice on stdout (breaks --json)
    found = page.find_tables(clip=grid, strategy="lines")
    return [(pymupdf.Rect(table.bbox), table.to_markdown().strip()) for table in found.tables]


def _rule_grid(drawings: list[dict]) -> pymupdf.Rect | None:
    """The area covered by straight rules, when there are enough both ways to form a table."""
    horizontal: list[tuple[float, float, float, float]] = []
    vertical: list[tuple[float, float, float, float]] = []
    for drawing in drawings:
        for item in drawing["items"]:
            for x0, y0, x1, y1 in _segments(item):
                if abs(y1 - y0) < RULE_THICKNESS and abs(x1 - x0) >= MIN_RULE_LENGTH:
                    horizontal.append((x0, y0, x1, y1))
                elif abs(x1 - x0) < RULE_THICKNESS and abs(y1 - y0) >= MIN_RULE_LENGTH:
                    vertical.append((x0, y0, x1, y1))
    if len(horizontal) < TABLE_MIN_RULES or len(vertical) < TABLE_MIN_RULES:
        return None
    rules = horizontal + vertical
    xs = [x for x0, _, x1, _ in rules for x in (x0, x1)]
    ys = [y for _, y0, _, y1 in rules for y in (y0, y1)]
    margin = RULE_THICKNESS
    return pymupdf.Rect(min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin)


def _segments(item: tuple) -> list[tuple[float, float, float, float]]:
    """Straight edges of one drawing item: a line, or the four sides of a rectangle."""
    if item[0] == "l":
        (x0, y0), (x1, y1) = item[1], item[2]
        return [(x0, y0, x1, y1)]
    if item[0] == "re":
        x0, y0, x1, y1 = tuple(item[1])
        if y1 - y0 < RULE_THICKNESS or x1 - x0 < RULE_THICKNESS:  # a filled bar drawn as a line
            return [(x0, y0, x1, y1)]
        return [(x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)]
    return []


def _normal(text: str) -> str:
    return _DIGITS.sub("#", text.lower()).strip()


def _repeated_band_lines(pages: list[list[_Line]]) -> set[str]:
    """Normalized header/footer lines: in the top/bottom band of many pages."""
    seen: Counter[str] = Counter()
    for lines in pages:
        seen.update({_normal(line.text) for line in lines if line.band})
    needed = max(MIN_REPEATS, int(REPEAT_SHARE * len(pages)))
    return {text for text, count in seen.items() if count >= needed}


def _is_furniture(line: _Line, repeated: set[str]) -> bool:
    return line.band and (_normal(line.text) in repeated or bool(_PAGE_NUMBER.match(line.text)))


def _page(
    number: int,
    lines: list[_Line],
    tables: list[tuple[pymupdf.Rect, str]],
    repeated: set[str],
) -> PdfPage:
    kept = [line for line in lines if not _is_furniture(line, repeated)]
    kept = [line for line in kept if not any(_inside(line, area) for area, _ in tables)]
    pieces: list[tuple[float, str]] = [(area.y0, markdown) for area, markdown in tables]
    paragraph: list[str] = []
    paragraph_y = 0.0
    block = -1
    for line in kept:
        if line.block != block and paragraph:
            pieces.append((paragraph_y, _join_lines(paragraph)))
            paragraph = []
        if not paragraph:
            paragraph_y = line.y0
        paragraph.append(line.text)
        block = line.block
    if paragraph:
        pieces.append((paragraph_y, _join_lines(paragraph)))
    pieces.sort(key=lambda piece: piece[0])
    text = "\n\n".join(piece for _, piece in pieces)
    return PdfPage(number, text, has_text=bool(text))


def _inside(line: _Line, area: pymupdf.Rect) -> bool:
    return area.y0 - 1 <= line.y0 <= area.y1


def _join_lines(lines: list[str]) -> str:
    """One paragraph from its lines: rejoin `hyphen-` + `ated`, no space between CJK lines."""
    joined = lines[0]
    for line in lines[1:]:
        if len(joined) > 1 and joined.endswith("-") and joined[-2].isalpha() and line[:1].islower():
            joined = joined[:-1] + line
        elif _CJK.match(joined[-1:]) and _CJK.match(line[:1]):
            joined += line
        else:
            joined += " " + line
    return joined


def _sections_from_outline(outline: list, page_count: int) -> tuple[Section, ...]:
    """Sections from the TOC: each runs until the next entry at its level or above."""
    entries = [(level, title.strip(), page) for level, title, page in outline if page >= 1]
    sections: list[Section] = []
    for index, (level, title, page) in enumerate(entries):
        following = (p for lvl, _, p in entries[index + 1 :] if lvl <= level)
        end = max(page, next(following, page_count + 1) - 1)
        sections.append(Section(title, level, page, min(end, page_count)))
    return tuple(sections)


def _sections_from_fonts(pages: list[list[_Line]], repeated: set[str]) -> tuple[Section, ...]:
    """Headings are short lines in type clearly larger than the body's most common size."""
    sizes: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            sizes[line.size] += len(line.text)
    if not sizes:
        return ()
    body = sizes.most_common(1)[0][0]
    headings: list[tuple[int, str, float]] = []
    for number, lines in enumerate(pages, start=1):
        for line in lines:
            if _is_furniture(line, repeated) or len(line.text) > HEADING_MAX_CHARS:
                continue
            if line.size >= body * HEADING_SCALE and any(c.isalpha() for c in line.text):
                headings.append((number, line.text, line.size))
    levels = sorted({size for _, _, size in headings}, reverse=True)[:MAX_HEADING_LEVELS]
    entries = [
        (levels.index(size) + 1, text, number) for number, text, size in headings if size in levels
    ]
    return _sections_from_outline(entries, len(pages))
