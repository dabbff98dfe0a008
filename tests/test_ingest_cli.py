"""`nsa ingest`: JSON and table output with a real (trained) BPE tokenizer, errors as exit 2."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pymupdf
import pytest
import typer
from ingest_support import train_tokenizer_json, write_tree
from tokenizers import Tokenizer
from typer.testing import CliRunner

from nsa_assist.cli.ingest import ingest_command

CORPUS = [
    Path(json.__file__).parent.joinpath(name).read_text("utf-8")
    for name in ("decoder.py", "encoder.py")
]


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer_json(tmp_path_factory.mktemp("tok") / "tokenizer.json", CORPUS, 800)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(ingest_command)
    return app


def _run(args: list[str], tmp_path: Path):
    return CliRunner().invoke(_app(), args, env={"NSA_HOME": str(tmp_path / "home")})


def _repo(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "repo",
        {
            "README.md": "# Demo\nA tiny service.\n",
            "src/server.py": "def serve(port):\n    return bind(port)\n",
            "src/db.go": "package db\n\nfunc Connect() error { return nil }\n",
            "logo.png": b"\x89PNG\0\0",
        },
    )


def test_json_output(tmp_path: Path, tokenizer_json: Path) -> None:
    args = [
        str(_repo(tmp_path)),
        "--question",
        "how does the server bind its port",
        "--budget",
        "300",
    ]
    result = _run([*args, "--model", str(tokenizer_json), "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"tokens", "budget", "chunks", "dropped", "language_counts"}
    assert data["budget"] == 300 and 0 < data["tokens"] <= 300
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    assert sum(c["tokens"] for c in data["chunks"]) == pytest.approx(data["tokens"], abs=8)
    first = next(c for c in data["chunks"] if c["kind"] == "file")
    assert first == {
        "path": "src/server.py",
        "start": 1,
        "end": 2,
        "kind": "file",
        "tokens": first["tokens"],
    }
    rendered = "### src/server.py (lines 1-2)\ndef serve(port):\n    return bind(port)\n\n"
    assert first["tokens"] == len(tokenizer.encode(rendered).ids)
    assert data["language_counts"] == {"go": 1, "markdown": 1, "python": 1}
    assert {"path": "logo.png", "reason": "binary (by extension)"} in data["dropped"]


def test_table_output_and_pdf(tmp_path: Path, tokenizer_json: Path) -> None:
    result = _run([str(_repo(tmp_path)), "--model", str(tokenizer_json)], tmp_path)
    assert result.exit_code == 0, result.output
    assert "src/server.py" in result.stdout and "of 8,192 tokens" in result.stdout
    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "Hello pages", fontsize=11)
    document.new_page()
    document.save(tmp_path / "d.pdf")
    result = _run([str(tmp_path / "d.pdf"), "--model", str(tokenizer_json), "--json"], tmp_path)
    data = json.loads(result.stdout)
    assert [c["page"] for c in data["chunks"]] == [1]
    assert data["notes"] == ["pages without a text layer (scanned?): 2"]


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda p: p / "missing", [], "source not found"),
        (lambda p: p, ["--budget", "0"], "--budget must be positive"),
        (lambda p: p / "enc.pdf", [], "encrypted; pass --password"),
        (lambda p: p / "bad.zip", [], "points outside the archive"),
    ],
    ids=["missing", "budget", "encrypted", "zip-slip"],
)
def test_errors_are_one_line_and_exit_2(
    tmp_path: Path, tokenizer_json: Path, make, extra, message
) -> None:
    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "secret", fontsize=11)
    document.save(
        tmp_path / "enc.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="o"
    )

    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("../../escape.py", "x = 1\n")
    result = _run([str(make(tmp_path)), "--model", str(tokenizer_json), *extra], tmp_path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    result = _run([str(_repo(tmp_path)), "--model", "no-such-model"], tmp_path)
    assert result.exit_code == 2
    assert "unknown model 'no-such-model'" in result.output
