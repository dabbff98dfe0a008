"""`nsa summarize` through the real command, on PDFs made here and the bundled 135M model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pymupdf
import pytest
from cli_support import TEST_MODEL, default_home, run_nsa
from ingest_support import standin_count_tokens

from nsa_assist.cli.summary_run import plan_waves
from nsa_assist.ingest.pdf import read_pdf
from nsa_assist.ingest.summarize_plan import PlanConfig, plan_summary

TOPICS = {
    "Harbor operations": ["ships", "cranes", "tides", "cargo", "pilots", "berths"],
    "Copper mining": ["ore", "smelting", "shafts", "miners", "veins", "furnaces"],
    "River ecology": ["trout", "reeds", "currents", "otters", "sediment", "herons"],
    "Lantern making": ["glass", "wicks", "brass", "oil", "solder", "frames"],
}


def make_report(
    path: Path, *, seed: int, pages_per_section: int = 2, lines: int = 14, **save
) -> Path:
    """A report with one TOC section per topic, each a few pages of topical sentences."""
    rng = random.Random(seed)
    document = pymupdf.open()
    toc = []
    for title, words in TOPICS.items():
        toc.append([1, title, document.page_count + 1])
        for _ in range(pages_per_section):
            page = document.new_page(width=595, height=842)
            page.insert_text((72, 80), title, fontsize=18)
            for row in range(lines):
                line = " ".join(rng.choice(words) for _ in range(10))
                page.insert_text((72, 120 + 16 * row), f"The {line}.", fontsize=11)
    document.set_toc(toc)
    document.save(path, **save)
    return path


def _assert_one_line_error(result, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    result = run_nsa("summarize", str(tmp_path / "nope.pdf"), home=tmp_path)
    _assert_one_line_error(result, "file not found")


def test_encrypted_pdf_without_password_is_one_line_error(tmp_path: Path) -> None:
    path = make_report(
        tmp_path / "locked.pdf",
        seed=random.randrange(1 << 30),
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw="s3cret",
        owner_pw="owner",
    )
    _assert_one_line_error(run_nsa("summarize", str(path), home=tmp_path), "--password")
    wrong = run_nsa("summarize", str(path), "--password", "nope", home=tmp_path)
    _assert_one_line_error(wrong, "wrong password")


def test_empty_and_textless_pdfs_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    _assert_one_line_error(run_nsa("summarize", str(empty), home=tmp_path), "empty")
    blank = pymupdf.open()
    blank.new_page()
    blank.save(tmp_path / "blank.pdf")
    result = run_nsa("summarize", str(tmp_path / "blank.pdf"), home=tmp_path)
    _assert_one_line_error(result, "no page has a text layer")


def test_non_pdf_and_bad_numbers_are_one_line_errors(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# notes\n")
    _assert_one_line_error(run_nsa("summarize", str(notes), home=tmp_path), "reads PDF files")
    pdf = make_report(tmp_path / "r.pdf", seed=1)
    result = run_nsa("summarize", str(pdf), "--budget", "0", home=tmp_path)
    _assert_one_line_error(result, "--budget")
    result = run_nsa("summarize", str(pdf), "--max-new-tokens", "-1", home=tmp_path)
    _assert_one_line_error(result, "--max-new-tokens")


@pytest.mark.slow
def test_budget_too_small_for_steps_is_one_line_error(tmp_path: Path) -> None:
    pdf = make_report(tmp_path / "r.pdf", seed=2)
    result = run_nsa(
        "summarize", str(pdf), "--model", TEST_MODEL, "--budget", "120", home=default_home()
    )
    _assert_one_line_error(result, "too small")


@pytest.mark.slow
def test_long_pdf_runs_map_then_reduce_and_cites_pages(tmp_path: Path) -> None:
    pdf = make_report(tmp_path / "report.pdf", seed=random.randrange(1 << 30), lines=5)
    page_count = 2 * len(TOPICS)
    result = run_nsa(
        "summarize",
        str(pdf),
        "--model",
        TEST_MODEL,
        "--budget",
        "400",
        "--max-new-tokens",
        "16",
        "--json",
        home=default_home(),
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == TEST_MODEL and out["pages"] == page_count
    assert not out["single_pass"]
    assert out["summary"].strip()
    maps = [step for step in out["steps"] if step["kind"] == "map"]
    reduces = [step for step in out["steps"] if step["kind"] == "reduce"]
    assert len(maps) >= 2 and reduces, out["steps"]
    assert out["steps"][-1]["kind"] == "reduce", "the last step joins the others"
    covered = [p for step in maps for p in range(step["pages"][0], step["pages"][1] + 1)]
    assert sorted(set(covered)) == list(range(1, page_count + 1)), "every page is read"
    assert reduces[-1]["pages"] == [1, page_count], "the final join covers every page"
    assert any(title in maps[0]["title"] for title in TOPICS), "map steps name their section"
    for step in out["steps"]:
        assert 0 < step["prompt_tokens"] <= 400
        assert 0 < step["output_tokens"] <= 16
    assert set(out["pages_cited"]) <= set(range(1, page_count + 1))
    assert all(out["timings"][key] > 0 for key in ("load", "plan", "run", "total"))


@pytest.mark.slow
def test_short_pdf_is_one_pass_streamed(tmp_path: Path) -> None:
    pdf = make_report(tmp_path / "short.pdf", seed=3, pages_per_section=1, lines=4)
    result = run_nsa(
        "summarize", str(pdf), "--model", TEST_MODEL, "--max-new-tokens", "12", home=default_home()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the summary streams to stdout"
    assert "one pass" in result.stderr
    assert "steps: 1 " in result.stderr


@pytest.mark.parametrize(("chunk", "summary"), [(150, 40), (300, 60), (120, 60)])
def test_waves_run_each_step_once_after_its_inputs(
    tmp_path: Path, chunk: int, summary: int
) -> None:
    pdf = make_report(tmp_path / "r.pdf", seed=random.randrange(1 << 30), pages_per_section=3)
    plan = plan_summary(read_pdf(pdf), PlanConfig(500, chunk, summary), standin_count_tokens)
    waves = plan_waves(plan)
    assert [step.id for step in waves[0]] == [step.id for step in plan.maps]
    done = {step.id for step in waves[0]}
    for wave in waves[1:]:  # a wave decodes together: it needs only earlier waves' results
        assert wave and all(set(step.inputs) <= done for step in wave)
        done |= {step.id for step in wave}
    order = [step.id for wave in waves for step in wave]
    assert sorted(order) == sorted([s.id for s in plan.maps] + [s.id for s in plan.reduces])
    assert order[-1] == plan.final and len(waves) >= 2
