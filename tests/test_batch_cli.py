"""`nsa batch` and `nsa jobs` end to end: bad lines rejected by number while the rest runs
on a worker the command starts itself (embedded Redis, local Ray), results written once,
a re-run skipping done ids, and nothing left running afterwards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import ray
from queue_support import random_text
from typer.testing import CliRunner

from nsa_assist.cli.app import app
from nsa_assist.services.embedded_redis import EmbeddedRedis, EmbeddedRedisConfig


def write_repo(root: Path, rng: random.Random) -> None:
    for i in range(4):
        path = root / f"pkg{i % 2}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(f"def f{i}_{j}():\n    return {rng.randint(0, 99)}" for j in range(5))
        path.write_text(f'"""{random_text(rng, 12)}"""\n{body}\n')


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NSA_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_batch_rejects_bad_lines_runs_the_rest_and_rerun_skips_done(env: Path) -> None:
    rng = random.Random()
    write_repo(env / "repo", rng)
    good = [{"id": f"job-{i}", "source": "repo", "question": random_text(rng, 5)} for i in range(4)]
    good.append({"id": "sum", "source": "repo", "task": "summarize"})
    bad = [
        ("{not json", "malformed JSON"),
        (json.dumps({"id": "k", "source": "repo", "task": "translate"}), "unknown kind"),
        (json.dumps({"id": "s", "question": "where?"}), "missing source"),
        (json.dumps({"id": "m", "source": "no-such-dir", "question": "x"}), "source not found"),
        (json.dumps({"id": "o", "source": "repo", "question": random_text(rng, 900)}), "oversized"),
    ]
    lines = [json.dumps(job) for job in good[:2]] + [text for text, _ in bad]
    lines += [json.dumps(job) for job in good[2:]]
    (env / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    args = ["batch", "jobs.jsonl", "--out", "out.jsonl", "--model", "test-echo", "--budget", "600"]

    first = CliRunner().invoke(app, args)
    assert first.exit_code == 2, first.output
    for number, (_, message) in enumerate(bad, start=3):
        assert f"jobs.jsonl:{number}: {message}" in first.stderr
    records = [json.loads(line) for line in (env / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [job["id"] for job in good]
    for record, job in zip(records, good, strict=True):
        assert record["status"] == "done" and record["attempts"] == 1
        assert record["answer"].startswith(f"echo {job['id']} ")
        assert record["answer"].endswith(job.get("question", "summarize"))
    assert not ray.is_initialized()
    server = EmbeddedRedis(EmbeddedRedisConfig(home=env / "home"))
    assert server.running_pid() is None, "nsa batch left its Redis running"

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert f"{len(good)} job(s) already done" in again.stderr
    assert [json.loads(line) for line in (env / "out.jsonl").read_text().splitlines()] == records

    listed = CliRunner().invoke(app, ["jobs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(j["id"] for j in json.loads(listed.stdout)) == sorted(j["id"] for j in good)
    shown = json.loads(CliRunner().invoke(app, ["jobs", "show", "job-0", "--json"]).stdout)
    assert shown["result"]["text"] == records[0]["answer"]
    watched = CliRunner().invoke(app, ["jobs", "watch", "job-0", "--json"])
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert watched.exit_code == 0 and events[-1]["status"] == "done"
    assert "".join(e["text"] for e in events if e["type"] == "text") == records[0]["answer"]
    retry = CliRunner().invoke(app, ["jobs", "retry", "job-0"])
    assert retry.exit_code == 2 and "only failed or cancelled" in retry.stderr
    cancel = CliRunner().invoke(app, ["jobs", "cancel", "job-0"])
    assert cancel.exit_code == 2 and "already done" in cancel.stderr
    missing = CliRunner().invoke(app, ["jobs", "show", "nope"])
    assert missing.exit_code == 2 and "no job 'nope'" in missing.stderr
    assert server.running_pid() is None
