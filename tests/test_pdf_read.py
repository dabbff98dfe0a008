"""Reading details of ingest/pdf.py: headings from font sizes, text around tables."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from nsa_assist.ingest.pdf import read_pdf

BODY = "The body text runs on in the common size of this document, line after line."


def _body(page: pymupdf.Page, top: float, lines: int = 6) -> None:
    for row in range(lines):
        page.insert_text((72, top + 14 * row), BODY, fontsize=11)


def _no_outline(tmp_path: Path, name: str, pages: list[list[tuple[str, float, str]]]) -> Path:
    """A PDF without an outline; each page a list of (text, font size, font) headings,
    each heading followed by body text."""
    document = pymupdf.open()
    for headings in pages:
        page = document.new_page(width=595, height=842)
        page.insert_text((72, 30), "Running header", fontsize=9)
        top = 100.0
        for text, size, font in headings:
            page.insert_text((72, top), text, fontsize=size, fontname=font)
            _body(page, top + 30)
            top += 150
        if not headings:
            _body(page, top)
    path = tmp_path / name
    document.save(path)
    return path


def test_headings_from_font_sizes_keep_escapes_cjk_and_levels(tmp_path: Path) -> None:
    path = _no_outline(
        tmp_path,
        "fonts.pdf",
        [
            [('R&D <core> "results" 2025', 20, "helv")],
            [],
            [("注意力机制", 20, "china-s"), ("Sub-part & more", 15, "helv")],
            [("Small but larger", 13, "helv")],
            [],
        ],
    )
    sections = read_pdf(path).sections
    assert [(s.title, s.level, s.start_page, s.end_page) for s in sections] == [
        ('R&D <core> "results" 2025', 1, 1, 2),
        ("注意力机制", 1, 3, 5),
        ("Sub-part & more", 2, 3, 5),
        ("Small but larger", 3, 4, 5),
    ]


def test_headings_on_a_table_page_and_table_text_once(tmp_path: Path) -> None:
    document = pymupdf.open()
    for number in range(1, 4):
        page = document.new_page(width=595, height=842)
        page.insert_text((72, 100), f"Chapter {number}", fontsize=20)
        _body(page, 130)
        if number == 2:
            page.insert_text((72, 226), "Table 1: fruit in stock", fontsize=11)
            for r, row in enumerate([["Fruit", "Qty"], ["apple", "3"], ["pear", "5"]]):
                for c, cell in enumerate(row):
                    rect = pymupdf.Rect(72 + 150 * c, 240 + 20 * r, 222 + 150 * c, 260 + 20 * r)
                    page.draw_rect(rect, color=(0, 0, 0), width=0.8)
                    page.insert_text((rect.x0 + 4, rect.y1 - 6), cell, fontsize=11)
            _body(page, 340, lines=2)
    path = tmp_path / "table.pdf"
    document.save(path)
    read = read_pdf(path)
    assert [(s.title, s.start_page) for s in read.sections] == [
        ("Chapter 1", 1),
        ("Chapter 2", 2),
        ("Chapter 3", 3),
    ]
    text = read.pages[1].text
    assert text.count("apple") == 1 and "|apple|3|" in text
    pieces = text.split("\n\n")
    assert pieces[0] == "Chapter 2" and pieces[2] == "Table 1: fruit in stock"
    assert pieces[3].startswith("|Fruit|Qty|") and pieces[4].startswith(BODY)


def test_text_beside_a_table_is_kept(tmp_path: Path) -> None:
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    for r, row in enumerate([["Fruit", "Qty"], ["apple", "3"], ["pear", "5"]]):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(72 + 100 * c, 300 + 20 * r, 172 + 100 * c, 320 + 20 * r)
            page.draw_rect(rect, color=(0, 0, 0), width=0.8)
            page.insert_text((rect.x0 + 4, rect.y1 - 6), cell, fontsize=11)
    beside = ["The right column goes on", "while the table sits", "in the left one."]
    for row, line in enumerate(beside):
        page.insert_text((320, 315 + 14 * row), line, fontsize=11)
    path = tmp_path / "beside.pdf"
    document.save(path)
    text = read_pdf(path).pages[0].text
    assert "|pear|5|" in text and text.count("pear") == 1
    assert " ".join(beside) in text


def test_ligatures_are_spelled_out(tmp_path: Path) -> None:
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # has the fi/fl glyphs
    if not font.is_file():
        pytest.skip("needs DejaVu Sans (Debian's fonts-dejavu-core) for ligature glyphs")
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    page.insert_text((72, 100), "the \ufb01nal \ufb02ag", fontsize=12, fontname="dv", fontfile=font)
    path = tmp_path / "ligatures.pdf"
    document.save(path)
    assert read_pdf(path).pages[0].text == "the final flag"
