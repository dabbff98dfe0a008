"""Which pages of a PDF get PyMuPDF's table search, and the tables it then finds."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pymupdf
import pytest

from nsa_assist.ingest.pdf import read_pdf

LISTING = "for item in items: print(item)"


@pytest.fixture
def table_searches(monkeypatch: pytest.MonkeyPatch) -> list[pymupdf.Rect]:
    """The clip of every `find_tables` call made while the test runs."""
    clips: list[pymupdf.Rect] = []
    search = pymupdf.Page.find_tables

    def counted(page: pymupdf.Page, *args, **kwargs):
        clips.append(pymupdf.Rect(kwargs["clip"]))
        return search(page, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "find_tables", counted)
    return clips


def _save(document: pymupdf.Document, path: Path) -> Path:
    document.save(path)
    return path


def _listing_page(document: pymupdf.Document) -> None:
    """A page like a DocBook manual's: a rule under the header, code listings in shaded
    boxes stacked in the left column and side by side below."""
    page = document.new_page(width=595, height=842)
    page.insert_text((72, 40), "Manual header", fontsize=9)
    page.draw_line((72, 50), (523, 50), color=(0, 0, 0), width=0.5)
    boxes = [(72, 100, 523, 140), (72, 150, 523, 190), (72, 300, 290, 360), (305, 300, 523, 360)]
    for x0, y0, x1, y1 in boxes:
        page.draw_rect(pymupdf.Rect(x0, y0, x1, y1), fill=(0.95, 0.95, 0.98), color=None)
        page.insert_text((x0 + 6, y0 + 20), LISTING, fontsize=9, fontname="cour")
    page.insert_text((72, 420), "Body text after the listings.", fontsize=11)


def _grid_lines(page: pymupdf.Page, x: float, y: float, rows: list[list[str]]) -> None:
    """A table drawn as one path of horizontal and vertical lines."""
    width, height = 120, 20
    shape = page.new_shape()
    for r in range(len(rows) + 1):
        shape.draw_line((x, y + r * height), (x + width * len(rows[0]), y + r * height))
    for c in range(len(rows[0]) + 1):
        shape.draw_line((x + c * width, y), (x + c * width, y + height * len(rows)))
    shape.finish(color=(0, 0, 0), width=0.6)
    shape.commit()
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            page.insert_text((x + c * width + 4, y + r * height + 14), cell, fontsize=10)


def _grid_cells(page: pymupdf.Page, x: float, y: float, rows: list[list[str]]) -> None:
    """A table drawn as one stroked rectangle per cell."""
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(x + 100 * c, y + 18 * r, x + 100 * (c + 1), y + 18 * (r + 1))
            page.draw_rect(rect, color=(0, 0, 0), width=0.8)
            page.insert_text((rect.x0 + 4, rect.y1 - 5), cell, fontsize=10)


def test_boxed_listings_and_page_rules_get_no_table_search(
    tmp_path: Path, table_searches: list[pymupdf.Rect]
) -> None:
    document = pymupdf.open()
    for _ in range(3):
        _listing_page(document)
    read = read_pdf(_save(document, tmp_path / "listings.pdf"))
    assert table_searches == []
    for page in read.pages:
        assert page.text.count(LISTING) == 4
        assert "|" not in page.text and page.text.endswith("Body text after the listings.")


def test_tables_of_lines_and_of_cells_are_found_each_in_its_own_area(
    tmp_path: Path, table_searches: list[pymupdf.Rect]
) -> None:
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    page.insert_text((72, 80), "Prices and stock", fontsize=11)
    _grid_lines(page, 72, 100, [["Fruit", "Price", "Origin"], ["apple", "3", "Spain"]])
    page.draw_rect(pymupdf.Rect(72, 200, 523, 240), fill=(0.9, 0.9, 0.9), color=None)
    page.insert_text((78, 222), LISTING, fontsize=9, fontname="cour")
    _grid_cells(page, 72, 300, [["Name", "Qty"], ["pear", "5"], ["fig", "7"]])
    page.insert_text((72, 400), "After the tables.", fontsize=11)
    text = read_pdf(_save(document, tmp_path / "tables.pdf")).pages[0].text
    assert len(table_searches) == 2  # the two grids, not the listing box between them
    first, second = table_searches
    assert first.contains(pymupdf.Rect(72, 100, 432, 140)) and first.y1 < 200
    assert second.contains(pymupdf.Rect(72, 300, 272, 354)) and second.y0 > 240
    assert "|Fruit|Price|Origin|" in text and "|apple|3|Spain|" in text
    assert "|Name|Qty|" in text and "|fig|7|" in text
    pieces = text.split("\n\n")
    assert pieces[0] == "Prices and stock" and pieces[-1] == "After the tables."
    assert LISTING in pieces[2]


def test_one_column_grid_is_no_table(tmp_path: Path, table_searches: list[pymupdf.Rect]) -> None:
    """Rows of a single column (boxes stacked and touching) hold no table for PyMuPDF."""
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    _grid_cells(page, 72, 100, [["alpha"], ["beta"], ["gamma"]])
    text = read_pdf(_save(document, tmp_path / "column.pdf")).pages[0].text
    assert table_searches == []
    assert text == "alpha\n\nbeta\n\ngamma"


def test_a_ruled_page_without_text_gets_no_table_search(
    tmp_path: Path, table_searches: list[pymupdf.Rect]
) -> None:
    """A scanned form: an image and a grid of rules, but no text layer."""
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pixmap.clear_with(200)
    page.insert_image(pymupdf.Rect(72, 72, 523, 770), pixmap=pixmap)
    _grid_cells(page, 72, 300, [["", ""], ["", ""]])
    read = read_pdf(_save(document, tmp_path / "scan.pdf"))
    assert table_searches == [] and read.pages_without_text == (1,)


def _random_table(page: pymupdf.Page, rng: random.Random, x: float, y: float) -> float:
    """A table of 1-6 rows and 1-5 columns in one of five drawing styles; returns its bottom."""
    rows, columns = rng.randint(1, 6), rng.randint(1, 5)
    xs = list(itertools.accumulate([x] + [rng.randint(40, 110) for _ in range(columns)]))
    height = rng.randint(14, 24)
    ys = [y + row * height for row in range(rows + 1)]
    style = rng.choice(["lines", "one path", "stroked cells", "filled cells", "thick lines"])
    width = rng.choice([0.3, 1.0, 2.0, 3.0]) if style == "thick lines" else 0.6
    if style in ("lines", "thick lines", "one path"):
        shape = page.new_shape()
        for y_rule in ys:
            shape.draw_line((xs[0], y_rule), (xs[-1], y_rule))
            if style != "one path":
                shape.finish(color=(0, 0, 0), width=width)
        for x_rule in xs:
            shape.draw_line((x_rule, ys[0]), (x_rule, ys[-1]))
            if style != "one path":
                shape.finish(color=(0, 0, 0), width=width)
        if style == "one path":
            shape.finish(color=(0, 0, 0), width=width)
        shape.commit()
    for row, column in itertools.product(range(rows), range(columns)):
        cell = pymupdf.Rect(xs[column], ys[row], xs[column + 1], ys[row + 1])
        if style == "stroked cells":
            page.draw_rect(cell, color=(0, 0, 0), width=width)
        elif style == "filled cells":
            grey = 0.85 if (row + column) % 2 else 0.95
            inset = pymupdf.Rect(cell.x0 + 0.5, cell.y0 + 0.5, cell.x1 - 0.5, cell.y1 - 0.5)
            page.draw_rect(inset, fill=(grey, grey, grey), color=None)
        page.insert_text((cell.x0 + 3, cell.y1 - 5), f"r{row}c{column}", fontsize=8)
    return ys[-1]


def test_tables_are_those_a_whole_page_search_finds(tmp_path: Path) -> None:
    """The pre-check may skip searching, never a table: PyMuPDF's search over the whole page
    (the slow way) is the reference, on pages of 1-3 random tables, some off the right edge."""
    rng = random.Random(5)
    document = pymupdf.open()
    for _ in range(12):
        page = document.new_page(width=595, height=842)
        y = 90.0
        for _ in range(rng.randint(1, 3)):
            y = _random_table(page, rng, rng.choice([72, 72, 300]), y + rng.randint(5, 60)) + 10
            if rng.random() < 0.5:
                page.insert_text((72, y + 14), "A paragraph between the tables.", fontsize=10)
                y += 20
    path = _save(document, tmp_path / "random.pdf")
    pymupdf.no_recommend_layout()
    with pymupdf.open(path) as reference:
        expected = [
            [table.to_markdown().strip() for table in page.find_tables(strategy="lines").tables]
            for page in reference
        ]
    assert sum(map(len, expected)) >= 15  # the seed gives enough tables to mean something
    for page, tables in zip(read_pdf(path).pages, expected, strict=True):
        for markdown in tables:
            assert markdown in page.text
        assert page.text.count("\n|---|") == len(tables)


def test_table_cells_are_plain_text(tmp_path: Path) -> None:
    """Italic runs inside a number (TeX sets them so) stay plain; a `|` in a cell is escaped."""
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    _grid_cells(page, 72, 100, [["Method", "Cycles"], ["a|b", ""]])
    page.insert_text((176, 131), "2", fontsize=10)
    page.insert_text((182, 131), ".", fontsize=10, fontname="tiit")
    page.insert_text((185, 131), "083", fontsize=10)
    text = read_pdf(_save(document, tmp_path / "plain.pdf")).pages[0].text
    assert text == "|Method|Cycles|\n|---|---|\n|a\\|b|2.083|"


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_tables_on_rotated_pages(tmp_path: Path, rotation: int) -> None:
    """Drawings and text come unrotated, PyMuPDF's table search works on the page as shown."""
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    page.insert_text((72, 100), "Stock", fontsize=11)
    _grid_cells(page, 72, 200, [["Fruit", "Qty"], ["apple", "3"], ["pear", "5"]])
    page.set_rotation(rotation)
    text = read_pdf(_save(document, tmp_path / "rotated.pdf")).pages[0].text
    assert text.startswith("Stock\n\n|") and text.count("\n|---|---|") == 1
    for cell in ("Fruit", "Qty", "apple", "3", "pear", "5"):
        assert text.count(cell) == 1 and f"|{cell}|" in text
