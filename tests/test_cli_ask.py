"""`nsa ask` and `nsa models` through the real command line, on the bundled 135M model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import TEST_MODEL, default_home, run_nsa

SAMPLE_REPO = Path(__file__).resolve().parents[1] / "examples" / "todo-service"


def _assert_one_line_error(result, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_source_is_one_line_error(tmp_path: Path) -> None:
    result = run_nsa("ask", str(tmp_path / "nope"), "why?", home=tmp_path)
    _assert_one_line_error(result, "source not found")


def test_unknown_model_is_one_line_error(tmp_path: Path) -> None:
    result = run_nsa("ask", str(SAMPLE_REPO), "why?", "--model", "gpt-17", home=tmp_path)
    _assert_one_line_error(result, "unknown model")


def test_bad_numbers_are_one_line_errors(tmp_path: Path) -> None:
    result = run_nsa("ask", str(SAMPLE_REPO), "why?", "--budget", "-5", home=tmp_path)
    _assert_one_line_error(result, "--budget")
    result = run_nsa("ask", str(SAMPLE_REPO), "  ", home=tmp_path)
    _assert_one_line_error(result, "question is empty")


def test_models_list_json_marks_one_default(tmp_path: Path) -> None:
    result = run_nsa("models", "list", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["name"] for row in rows} >= {TEST_MODEL, "qwen2.5-coder-0.5b-instruct"}
    assert sum(row["default"] for row in rows) == 1
    assert not any(row["present"] for row in rows), "a fresh home holds no model"


def test_models_pull_unknown_name(tmp_path: Path) -> None:
    _assert_one_line_error(run_nsa("models", "pull", "nope", home=tmp_path), "unknown model")


@pytest.mark.slow
def test_empty_folder_is_one_line_error(tmp_path: Path) -> None:
    """Found before the model loads: a fresh home, and nothing is downloaded first."""
    empty, home = tmp_path / "empty", tmp_path / "home"
    empty.mkdir()
    result = run_nsa("ask", str(empty), "why?", "--model", TEST_MODEL, home=home)
    _assert_one_line_error(result, "no readable text files")
    assert not (home / "models").exists()


@pytest.mark.slow
def test_budget_below_question_is_one_line_error() -> None:
    """Counting the question needs the model's tokenizer, so the model is pulled first: its
    first-use download notice is progress, not part of the error."""
    pulled = run_nsa("models", "pull", TEST_MODEL, home=default_home())
    assert pulled.returncode == 0, pulled.stderr
    question = "where is the retry policy configured? " * 20
    result = run_nsa(
        "ask",
        str(SAMPLE_REPO),
        question,
        "--budget",
        "64",
        "--model",
        TEST_MODEL,
        home=default_home(),
    )
    _assert_one_line_error(result, "over the budget")


@pytest.mark.slow
def test_ask_json_end_to_end() -> None:
    result = run_nsa(
        "ask",
        str(SAMPLE_REPO),
        "Where is authentication enforced?",
        "--model",
        TEST_MODEL,
        "--max-new-tokens",
        "12",
        "--json",
        home=default_home(),
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == TEST_MODEL
    assert 0 < answer["generated_tokens"] <= 12
    assert answer["answer"].strip()
    assert "todo/auth.py" in answer["sources"] and "README.md" in answer["sources"]
    # cited: the context's line ranges of the files the answer names (Context.cited_in)
    assert set(answer["cited"]) <= set(answer["citations"])
    assert all(cite.rsplit(":", 1)[0] in answer["answer"] for cite in answer["cited"])
    assert answer["context_tokens"] < answer["prompt_tokens"] <= 8192
    assert all(answer["timings"][key] > 0 for key in ("load", "prefill", "decode"))


@pytest.mark.slow
def test_ask_tight_budget_says_what_it_dropped() -> None:
    result = run_nsa(
        "ask",
        str(SAMPLE_REPO),
        "What does storage do?",
        "--budget",
        "300",
        "--model",
        TEST_MODEL,
        "--max-new-tokens",
        "4",
        "--json",
        home=default_home(),
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    # the whole sample repo is ~450 prompt tokens with this model (it fits in 700)
    assert answer["dropped"], "a 300-token budget cannot hold the whole sample repo"
    assert "dropped" in result.stderr
    assert answer["prompt_tokens"] <= 300
    kept = set(answer["sources"])
    assert not kept & {item["path"] for item in answer["dropped"]}


@pytest.mark.slow
def test_ask_queue_without_worker_is_one_line_error(tmp_path: Path) -> None:
    # a private home: its embedded Redis has never seen a worker
    home = tmp_path / "home"
    models = default_home() / "models"
    home.mkdir()
    (home / "models").symlink_to(models, target_is_directory=True)
    result = run_nsa(
        "ask",
        str(SAMPLE_REPO),
        "Where is auth enforced?",
        "--model",
        TEST_MODEL,
        "--queue",
        home=home,
    )
    _assert_one_line_error(result, "no worker is running")
