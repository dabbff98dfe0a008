"""PDF reading, page packing and the summary plan, on PDFs made here with PyMuPDF."""

from __future__ import annotations

import random
from pathlib import Path

import pymupdf
import pytest
from ingest_support import standin_count_tokens

from nsa_assist.ingest.errors import BudgetError, PdfError
from nsa_assist.ingest.pdf import read_pdf
from nsa_assist.ingest.pdf_pack import pack_pages
from nsa_assist.ingest.pipeline import IngestOptions, ingest_source
from nsa_assist.ingest.summarize_plan import PlanConfig, plan_summary, step_text
from nsa_assist.ingest.terms import parse_question

HEADER = "ACME Annual Report 2025"
CJK_LINES = ("注意力机制是深度学习的核心", "稀疏注意力可以加速长文本")
WORDS = [
    "river",
    "stone",
    "cloud",
    "lantern",
    "harbor",
    "meadow",
    "signal",
    "copper",
    "violet",
    "engine",
]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(9))


def make_pdf(path: Path, *, pages: int = 8, toc: bool = True, seed: int = 0, **save) -> Path:
    """Pages with a running header and a page-number footer; page 3 holds a ruled table,
    page 4 CJK text, page 5 only an image; body lines end in hyphenated words."""
    rng = random.Random(seed)
    document = pymupdf.open()
    for number in range(1, pages + 1):
        page = document.new_page(width=595, height=842)
        page.insert_text((72, 30), HEADER, fontsize=9)
        page.insert_text((290, 820), str(number), fontsize=9)
        if number == 5:
            pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
            pixmap.clear_with(180)
            page.insert_image(pymupdf.Rect(100, 100, 300, 300), pixmap=pixmap)
            continue
        page.insert_text((72, 100), f"Chapter {number}", fontsize=20)
        lines = [f"{_sentence(rng)} extra-", f"ordinary {_sentence(rng)} care-", "fully done."]
        for row, line in enumerate(lines):
            page.insert_text((72, 140 + 14 * row), line, fontsize=11)
        if number == 3:
            _table(page, [["Name", "Qty"], ["apple", "3"], ["pear", "5"]])
        if number == 4:
            for row, line in enumerate(CJK_LINES):
                page.insert_text((72, 400 + 14 * row), line, fontsize=11, fontname="china-s")
    if toc:
        document.set_toc(
            [[1, "Chapter 1", 1], [1, "Chapter 2", 2], [2, "Part 2.1", 2], [1, "Chapter 3", 3]]
        )
    document.save(path, **save)
    return path


def _table(page: pymupdf.Page, rows: list[list[str]]) -> None:
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(72 + 150 * c, 300 + 20 * r, 222 + 150 * c, 320 + 20 * r)
            page.draw_rect(rect, color=(0, 0, 0), width=0.8)
            page.insert_text((rect.x0 + 4, rect.y1 - 6), cell, fontsize=10)


def test_pages_are_clean(tmp_path: Path) -> None:
    document = read_pdf(make_pdf(tmp_path / "a.pdf"))
    assert [p.number for p in document.pages] == list(range(1, 9))
    for page in document.pages:
        assert HEADER not in page.text
        assert not any(line.strip().isdigit() for line in page.text.splitlines())
    first = document.pages[0].text
    assert first.startswith("Chapter 1\n\n")
    assert " extraordinary " in first and " carefully done." in first
    assert "|Name|Qty|" in document.pages[2].text and "|pear|5|" in document.pages[2].text
    assert "".join(CJK_LINES) in document.pages[3].text
    assert document.pages_without_text == (5,)


def test_sections_from_outline_and_from_fonts(tmp_path: Path) -> None:
    with_toc = read_pdf(make_pdf(tmp_path / "a.pdf"))
    assert [(s.title, s.level, s.start_page, s.end_page) for s in with_toc.sections] == [
        ("Chapter 1", 1, 1, 1),
        ("Chapter 2", 1, 2, 2),
        ("Part 2.1", 2, 2, 2),
        ("Chapter 3", 1, 3, 8),
    ]
    by_font = read_pdf(make_pdf(tmp_path / "b.pdf", toc=False))
    titles = [(s.title, s.start_page) for s in by_font.sections]
    assert titles == [(f"Chapter {n}", n) for n in (1, 2, 3, 4, 6, 7, 8)]


def test_encrypted_needs_the_password(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "e.pdf",
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw="s3cret",
        owner_pw="owner",
    )
    with pytest.raises(PdfError, match="encrypted; pass --password"):
        read_pdf(path)
    with pytest.raises(PdfError, match="wrong password"):
        read_pdf(path, "nope")
    assert "Chapter 2" in read_pdf(path, "s3cret").pages[1].text


def test_corrupted_and_empty_are_clear_errors(tmp_path: Path) -> None:
    good = make_pdf(tmp_path / "g.pdf").read_bytes()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + bytes(random.Random(1).getrandbits(8) for _ in range(500)))
    with pytest.raises(PdfError, match="not a readable PDF"):
        read_pdf(broken)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(PdfError, match="empty"):
        read_pdf(empty)
    truncated = tmp_path / "cut.pdf"
    truncated.write_bytes(good[: len(good) // 3])
    try:  # MuPDF repairs some truncations; then the pages it kept must still read
        document = read_pdf(truncated)
    except PdfError as error:
        assert "cut.pdf" in str(error)
    else:
        assert document.pages


def test_pack_pages_cites_pages_within_budget(tmp_path: Path) -> None:
    document = read_pdf(make_pdf(tmp_path / "a.pdf", pages=30, seed=3))
    for budget in (40, 200, 1000, 100_000):
        context = pack_pages(document, parse_question(""), budget, standin_count_tokens)
        assert context.tokens <= budget == context.budget
        assert context.tokens == standin_count_tokens(context.text)
        pages = [c.page for c in context.chunks]
        assert pages == sorted(pages) and 5 not in pages
    reasons = {d.path: d.reason for d in context.dropped}
    assert reasons == {"p. 5": "no text layer (scanned?)"}
    assert context.text.startswith("### p. 1 — Chapter 1\nChapter 1\n\n")


def test_question_picks_matching_pages(tmp_path: Path) -> None:
    document = read_pdf(make_pdf(tmp_path / "a.pdf", pages=12))
    asked = pack_pages(document, parse_question("pear quantity"), 90, standin_count_tokens)
    plain = pack_pages(document, parse_question(""), 90, standin_count_tokens)
    assert 3 in [c.page for c in asked.chunks]
    assert 3 not in [c.page for c in plain.chunks]


def test_ingest_source_dispatches_pdf_and_notes_scans(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "a.pdf")
    result = ingest_source(path, "", 10_000, standin_count_tokens, IngestOptions())
    assert result.language_counts == {"pdf": 8}
    assert result.notes == ("pages without a text layer (scanned?): 5",)


def test_plan_single_pass_when_it_fits(tmp_path: Path) -> None:
    document = read_pdf(make_pdf(tmp_path / "a.pdf"))
    plan = plan_summary(document, PlanConfig(10_000, 2_000, 200), standin_count_tokens)
    assert plan.single_pass and plan.final == "m0"
    assert [p.page for p in plan.maps[0].parts] == [1, 2, 3, 4, 6, 7, 8]


@pytest.mark.parametrize(("chunk", "summary"), [(150, 40), (300, 60), (120, 60)])
def test_plan_map_reduce_covers_every_page_once(tmp_path: Path, chunk: int, summary: int) -> None:
    document = read_pdf(make_pdf(tmp_path / "a.pdf", pages=40, seed=chunk))
    plan = plan_summary(document, PlanConfig(500, chunk, summary), standin_count_tokens)
    assert not plan.single_pass
    covered = [p.page for step in plan.maps for p in step.parts]
    assert covered == [p.number for p in document.pages if p.has_text]
    for step in plan.maps:
        assert step.tokens <= chunk
        assert standin_count_tokens(step_text(document, step)) <= step.tokens + 4 * len(step.parts)
    fan_in = max(2, chunk // summary)
    ids = {step.id for step in plan.maps}
    consumed: list[str] = []
    for step in plan.reduces:
        assert 2 <= len(step.inputs) <= fan_in and set(step.inputs) <= ids
        consumed += step.inputs
        ids.add(step.id)
    assert sorted(consumed) == sorted(ids - {plan.final})
    assert plan.final == plan.reduces[-1].id
    first, last = plan.reduces[-1].pages
    assert (first, last) == (1, 40)


def test_plan_budget_errors(tmp_path: Path) -> None:
    with pytest.raises(BudgetError):
        PlanConfig(100, 200, 10)
    with pytest.raises(BudgetError):
        PlanConfig(1000, 100, 60)
