"""The real engine behind the queue (SmolLM2-135M on CPU; slow): `EngineRunner` streams
exactly the text it returns, and `nsa batch` runs jobs on it end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cli_support import TEST_MODEL, default_home, run_nsa
from model_fixtures import smollm2_gguf  # noqa: F401  (fixture)
from queue_support import random_text

from nsa_assist.services.engine_runner import EngineRunner, EngineRunnerConfig
from nsa_assist.workers.runner import Task

MAX_NEW = 24


class CollectingSink:
    """Keeps what a runner reports, in memory."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.reports: dict[str, list[tuple[int, int]]] = {}

    def progress(self, job_id: str, done: int, total: int) -> None:
        self.reports.setdefault(job_id, []).append((done, total))

    def token(self, job_id: str, text: str) -> None:
        self.text[job_id] = self.text.get(job_id, "") + text

    def cancelled(self, job_id: str) -> bool:
        return False

    def flush(self) -> None:
        pass


@pytest.mark.slow
def test_engine_runner_streams_what_it_returns(smollm2_gguf: Path) -> None:  # noqa: F811
    rng = random.Random()
    context = f"### app.py (lines 1-3)\ndef {random_text(rng, 1)}():\n    return 42\n"
    config = EngineRunnerConfig(TEST_MODEL, default_home(), "cpu", max_batch=2, max_seq_len=1024)
    runner = EngineRunner(config)
    tasks = [
        Task("ask", "ask", "repo", context, "What does the function return?", MAX_NEW, 1),
        Task("sum", "summarize", "doc", context, None, MAX_NEW, 1),
        Task("long", "ask", "repo", "word " * 2000, "too long?", MAX_NEW, 1),
    ]
    sink = CollectingSink()
    ask, summary, long = runner.run(tasks, sink)
    for result in (ask, summary):
        assert result.error is None and result.finish_reason in ("stop", "length")
        assert 0 < result.completion_tokens <= MAX_NEW and result.prompt_tokens > 20
        assert result.text.strip() and sink.text[result.job_id] == result.text
        done, total = sink.reports[result.job_id][-1]
        assert done == result.prompt_tokens + result.completion_tokens <= total
    assert long.error is not None and "max_seq_len" in long.error


@pytest.mark.slow
def test_nsa_batch_on_the_real_model(tmp_path: Path, smollm2_gguf: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(default_home() / "models")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "auth.py").write_text("def login(user):\n    return user.token is not None\n")
    jobs = [
        {"id": "q1", "source": "repo", "question": "What does login check?"},
        {"id": "q2", "source": "repo", "task": "summarize"},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
    out = tmp_path / "out.jsonl"
    done = run_nsa(
        "batch",
        str(tmp_path / "jobs.jsonl"),
        "--out",
        str(out),
        "--model",
        TEST_MODEL,
        "--budget",
        "512",
        "--max-new-tokens",
        "16",
        home=home,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["q1", "q2"]
    assert all(r["status"] == "done" and r["answer"].strip() for r in records)
    assert all(0 < r["completion_tokens"] <= 16 for r in records)
