"""Read a PDF into clean page texts and sections, with PyMuPDF's plain text extraction.

Per page: text lines in reading order, joined into paragraphs (hyphenated line ends
rejoined, CJK lines joined without a space), lines repeated in the top or bottom band of
many pages (running headers, footers, page numbers) removed, ruled tables rendered as
Markdown. Sections come from the outline (TOC), or from font sizes when there is none.
Pages without a text layer are reported, not guessed at.

MuPDF reads each page's text once. PyMuPDF's table search is by far the slowest step (10-100
ms a page), so it runs only where the page's rules form a grid of two columns or more.
"""

from __future__ import annotations

import html
import itertools
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
TABLE_MIN_COLUMNS = 2
"""PyMuPDF drops tables of one column; ours too (one column is a box, e.g. a code listing)."""
MIN_RULE_LENGTH = 8.0
RULE_THICKNESS = 2.0
RULE_REACH = 7.0
"""Rules this close touch. PyMuPDF snaps and joins edges within 3 pt each, so a table it
builds never spans two of our groups."""
RULE_SAME = 1.0
"""Rule positions at most this far apart are one; below PyMuPDF's 3 pt snap, so we never
count fewer distinct rules than it does."""
TEXT_FLAGS = pymupdf.TEXTFLAGS_TEXT & ~pymupdf.TEXT_PRESERVE_LIGATURES
"""PyMuPDF's plain-text flags, but ligatures spelled out ("ﬁ" -> "fi"), as a reader and the
question's terms spell them; extraction costs the same."""
HEADING_SCALE = 1.15
HEADING_MAX_CHARS = 120
MAX_HEADING_LEVELS = 3
_PAGE_NUMBER = re.compile(r"^\W*(?:page\s*)?(?:\d+|[ivxlcdm]+)(?:\s*(?:of|/)\s*\d+)?\W*$", re.I)
_DIGITS = re.compile(r"\d+")
# MuPDF's HTML of a text page: a <p> per line, a <span> per run of one font, text escaped
_HTML_LINE = re.compile(r'<p style="top:(-?[\d.]+)pt;left:(-?[\d.]+)pt;line-height:([\d.]+)pt')
_HTML_SPAN = re.compile(r"font-size:([\d.]+)pt[^>]*>([^<]*)</span>")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")
_CJK_FIRST = "\u3000"  # no character below this is CJK: most lines skip the pattern


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
    x0: float
    x1: float


@dataclass(frozen=True, slots=True)
class _RawPage:
    """What one page yields before the whole document is seen."""

    lines: list[_Line]
    """Text lines by block, in reading order."""
    tables: list[tuple[pymupdf.Rect, str]]
    height: float
    markup: str
    """MuPDF's HTML of the text, which has font sizes; only kept when there is no outline."""


def read_pdf(path: Path, password: str | None = None) -> PdfDocument:
    """Pages and sections of the PDF at `path`; raises `PdfError` when it cannot be read."""
    document = _open(path, password)
    with document:
        outline = document.get_toc(simple=True)
        raw = [_read_page(page, sized=not outline) for page in document]
    repeated = _repeated_band_lines([page.lines for page in raw])
    pages = tuple(
        _page(number, page.lines, page.tables, repeated) for number, page in enumerate(raw, start=1)
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


def _read_page(page: pymupdf.Page, sized: bool) -> _RawPage:
    """One page's lines and tables, and its text as HTML when `sized`; MuPDF reads it once.

    The HTML carries each line's font sizes at a fifth of the cost of the "dict" extraction
    (which builds a Python dict per span), and is parsed only where a heading may be.
    """
    textpage = page.get_textpage(flags=TEXT_FLAGS)
    shown = page.rect
    height = (shown.width if page.rotation % 180 else shown.height) or 1.0  # text is unrotated
    lines = _block_lines(page.get_text("blocks", textpage=textpage, sort=True), height)
    tables = _tables(page) if lines else []  # PyMuPDF keeps no table without text
    if tables:  # lines placed one by one, so that those inside a table can be left out
        lines = _dict_lines(page.get_text("dict", textpage=textpage, sort=True), height)
    markup = textpage.extractHTML() if sized and lines else ""
    return _RawPage(lines, tables, height, markup)


def _block_lines(blocks: list[tuple], height: float) -> list[_Line]:
    """Text lines in reading order (top to bottom, then left to right), positioned by block."""
    lines: list[_Line] = []
    for index, (x0, y0, x1, y1, text, _, kind) in enumerate(blocks):
        if kind != 0:  # an image block
            continue
        band = y1 < BAND * height or y0 > (1 - BAND) * height
        for row, line in enumerate(text.split("\n")):
            if stripped := line.strip():
                lines.append(_Line(y0 + row * 1e-3, stripped, 0.0, index, band, x0, x1))
    return lines


def _html_lines(markup: str, height: float) -> list[_Line]:
    """Each text line of MuPDF's HTML with its largest font size, in sorted-block order."""
    placed: list[tuple[float, float, _Line]] = []
    for piece in markup.split("</p>"):
        start = _HTML_LINE.search(piece)
        spans = _HTML_SPAN.findall(piece)
        text = html.unescape("".join(text for _, text in spans)).strip()
        if start is None or not text:
            continue
        top, left, line_height = map(float, start.groups())
        band = top + line_height < BAND * height or top > (1 - BAND) * height
        size = max(float(size) for size, _ in spans)
        line = _Line(top, text, size, -1, band, left, left)  # (never tested against a table)
        placed.append((top + line_height, left, line))
    placed.sort(key=lambda item: item[:2])  # like PyMuPDF's sorted blocks: bottom, then left
    return [line for _, _, line in placed]


def _dict_lines(content: dict, height: float) -> list[_Line]:
    """Text lines from PyMuPDF's "dict" extraction, each placed by its own position."""
    lines: list[_Line] = []
    for index, block in enumerate(content["blocks"]):
        for line in block.get("lines", ()):
            spans = line["spans"]
            text = "".join(span["text"] for span in spans).strip()
            if not text:
                continue
            x0, y0, x1, y1 = line["bbox"]
            band = y1 < BAND * height or y0 > (1 - BAND) * height
            lines.append(_Line(y0, text, 0.0, index, band, x0, x1))
    return lines


def _tables(page: pymupdf.Page) -> list[tuple[pymupdf.Rect, str]]:
    """Ruled tables as (area, Markdown).

    `find_tables` costs 10-100 ms per page, so it runs only inside groups of touching rules
    that can form a table of two or more columns, one group at a time.
    """
    areas = _table_areas(page.get_cdrawings())
    if not areas:
        return []
    # drawings and text come unrotated, find_tables works on the page as shown
    unrotate = page.derotation_matrix
    bounds = page.rect * unrotate  # like the text, a table ends at the page's edge
    areas = [area & bounds for area in areas if not (area & bounds).is_empty]
    pymupdf.no_recommend_layout()  # else find_tables prints advice on stdout (breaks --json)
    found: list[tuple[pymupdf.Rect, str]] = []
    for area in areas:
        tables = page.find_tables(clip=area * page.rotation_matrix, strategy="lines").tables
        found += [(pymupdf.Rect(t.bbox) * unrotate, _markdown(t.extract())) for t in tables]
    return found


def _markdown(rows: list[list[str | None]]) -> str:
    """A table in Markdown, its first row the header, line breaks in cells as `<br>`.

    PyMuPDF's own `to_markdown` wraps italic runs in `_`, which breaks numbers set in math
    fonts ("2_._083").
    """
    cells = [
        [(cell or "").replace("|", "\\|").replace("\n", "<br>") for cell in row] for row in rows
    ]
    lines = ["|" + "|".join(row) + "|" for row in cells]
    lines.insert(1, "|---" * len(cells[0]) + "|")
    return "\n".join(lines)


def _table_areas(drawings: list[dict]) -> list[pymupdf.Rect]:
    """Areas of the rule groups with enough distinct rules both ways to hold a table.

    PyMuPDF keeps a table only when it has two columns or more, so its group needs three
    vertical rules at distinct positions and two horizontal ones. Code listings in boxes
    (two vertical rules each) and page rules never qualify.
    """
    horizontal, vertical = _rules(drawings)
    rules = horizontal + vertical
    areas: list[pymupdf.Rect] = []
    for group in _touching_groups(rules):
        xs = [rules[i][0] for i in group if i >= len(horizontal)]
        ys = [rules[i][1] for i in group if i < len(horizontal)]
        if _distinct(xs) > TABLE_MIN_COLUMNS and _distinct(ys) >= 2:
            x0 = min(rules[i][0] for i in group) - RULE_THICKNESS
            y0 = min(rules[i][1] for i in group) - RULE_THICKNESS
            x1 = max(rules[i][2] for i in group) + RULE_THICKNESS
            y1 = max(rules[i][3] for i in group) + RULE_THICKNESS
            areas.append(pymupdf.Rect(x0, y0, x1, y1))
    return sorted(areas, key=lambda area: (area.y0, area.x0))


_Box = tuple[float, float, float, float]


def _rules(drawings: list[dict]) -> tuple[list[_Box], list[_Box]]:
    """Horizontal and vertical straight rules as (x0, y0, x1, y1) with x0 <= x1, y0 <= y1."""
    horizontal: set[_Box] = set()
    vertical: set[_Box] = set()
    for drawing in drawings:
        for item in drawing["items"]:
            for x0, y0, x1, y1 in _segments(item):
                box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
                if box[3] - box[1] < RULE_THICKNESS and box[2] - box[0] >= MIN_RULE_LENGTH:
                    horizontal.add(box)
                elif box[2] - box[0] < RULE_THICKNESS and box[3] - box[1] >= MIN_RULE_LENGTH:
                    vertical.add(box)
    return sorted(horizontal), sorted(vertical)


def _segments(item: tuple) -> list[_Box]:
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


def _touching_groups(boxes: list[_Box]) -> list[list[int]]:
    """Indices of `boxes` grouped by touching (within RULE_REACH), transitively."""
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    for position, i in enumerate(order):
        _, y0, x1, y1 = boxes[i]
        for j in order[position + 1 :]:
            other = boxes[j]
            if other[0] > x1 + RULE_REACH:
                break  # sorted by x0: no later box reaches back to this one
            if other[1] <= y1 + RULE_REACH and other[3] >= y0 - RULE_REACH:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _distinct(positions: list[float]) -> int:
    """How many positions differ by more than RULE_SAME from their sorted neighbour."""
    ordered = sorted(positions)
    gaps = (b - a for a, b in itertools.pairwise(ordered))
    return (1 if ordered else 0) + sum(1 for gap in gaps if gap > RULE_SAME)


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
    """Whether a line starts within a table's rows and overlaps its columns."""
    return area.y0 - 1 <= line.y0 <= area.y1 and line.x0 < area.x1 and line.x1 > area.x0


def _join_lines(lines: list[str]) -> str:
    """One paragraph from its lines: rejoin `hyphen-` + `ated`, no space between CJK lines."""
    joined = lines[0]
    for line in lines[1:]:
        if joined.endswith("-") and len(joined) > 1 and joined[-2].isalpha() and line[:1].islower():
            joined = joined[:-1] + line
        elif line[:1] >= _CJK_FIRST and _CJK.match(joined[-1:]) and _CJK.match(line[:1]):
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


def _sections_from_fonts(pages: list[_RawPage], repeated: set[str]) -> tuple[Section, ...]:
    """Headings are short lines in type clearly larger than the body's most common size."""
    spans = [_HTML_SPAN.findall(page.markup) for page in pages]
    sizes: Counter[float] = Counter()
    for page_spans in spans:
        for size, text in page_spans:
            sizes[float(size)] += len(html.unescape(text)) if "&" in text else len(text)
    if not sizes:
        return ()
    least = sizes.most_common(1)[0][0] * HEADING_SCALE
    headings: list[tuple[int, str, float]] = []
    for number, (page, page_spans) in enumerate(zip(pages, spans, strict=True), start=1):
        if all(float(size) < least for size, _ in page_spans):
            continue  # most pages: no line to parse
        for line in _html_lines(page.markup, page.height):
            if _is_furniture(line, repeated) or len(line.text) > HEADING_MAX_CHARS:
                continue
            if line.size >= least and any(c.isalpha() for c in line.text):
                headings.append((number, line.text, line.size))
    levels = sorted({size for _, _, size in headings}, reverse=True)[:MAX_HEADING_LEVELS]
    entries = [
        (levels.index(size) + 1, text, number) for number, text, size in headings if size in levels
    ]
    return _sections_from_outline(entries, len(pages))
