"""`Context.cited_in`: the files an answer names, turned into the line ranges the model saw."""

from __future__ import annotations

from pathlib import Path

from ingest_support import standin_count_tokens

from nsa_assist.ingest.context import Chunk, Context
from nsa_assist.ingest.pipeline import IngestOptions, ingest_repository
from nsa_assist.ingest.walk import WalkConfig

SAMPLE_REPO = Path(__file__).resolve().parents[1] / "examples" / "todo-service"


def _context(*chunks: Chunk) -> Context:
    return Context("text", 10, 100, chunks)


def test_a_named_file_gives_its_lines_in_the_order_the_answer_names_them() -> None:
    context = ingest_repository(
        SAMPLE_REPO, "Where is authentication enforced?", 20_000, standin_count_tokens,
        IngestOptions(walk=WalkConfig(use_git=False)),
    ).context  # fmt: skip
    files = [c for c in context.chunks if c.kind == "file"]
    assert len(files) >= 2
    first, second = files[0], files[1]
    answer = f"It is checked in `{second.path}`, called from {first.path}:3."
    assert context.cited_in(answer) == (second, first)
    assert context.cited_in("No file is named here.") == ()


def test_only_whole_paths_count() -> None:
    server = Chunk(5, "todo/server.py", 1, 58)
    auth = Chunk(5, "todo/auth.py", 3, 40)
    context = _context(Chunk(5, "(repo map)", 1, 9, kind="map"), server, auth)
    assert context.cited_in("see (todo/server.py).") == (server,)
    assert context.cited_in("todo/server.pyc, xtodo/auth.py, todo/server.py.bak") == ()
    assert context.cited_in("the (repo map) shows it") == ()


def test_a_file_in_several_chunks_gives_each_and_pages_are_left_to_the_answer() -> None:
    one = Chunk(5, "big.py", 10, 20, kind="definition")
    two = Chunk(5, "big.py", 50, 60, kind="definition")
    page = Chunk(5, None, page=3, kind="page")
    context = _context(one, page, two)
    assert context.cited_in("Both live in big.py.") == (one, two)
    assert context.cited_in("p. 3 says so") == ()
