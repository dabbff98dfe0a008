"""Ranking and packing: budgets, order, citations, determinism, on generated and real code."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from ingest_support import standin_count_tokens, write_tree
from model_fixtures import qwen05_gguf, shared_home  # noqa: F401 (a fixture)

from nsa_assist.ingest.errors import BudgetError, SourceError
from nsa_assist.ingest.pack import PackConfig
from nsa_assist.ingest.path_order import pack_in_path_order
from nsa_assist.ingest.pipeline import IngestOptions, ingest_repository
from nsa_assist.ingest.walk import WalkConfig
from nsa_assist.model.registry import QWEN_CODER_0_5B

STDLIB = Path(json.__file__).parent.parent


def _words(rng: random.Random, n: int) -> str:
    vocab = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def _repo(tmp_path: Path, seed: int) -> Path:
    """A small multi-language repo where only `auth/token.py` is about token refresh."""
    rng = random.Random(seed)
    files = {
        "README.md": "# Shop\nA demo shop service.\n",
        "auth/token.py": (
            "class TokenRefresher:\n"
            '    """Refreshes expired access tokens."""\n\n'
            "    def refresh_token(self, token):\n"
            "        return renew(token)\n"
        ),
        "auth/session.go": "package auth\n\nfunc OpenSession() int { return 1 }\n",
        "web/app.ts": "export function startServer(port: number): void { listen(port) }\n",
        "lib/Cart.java": "class Cart { int total() { return 0; } }\n",
    }
    for i in range(25):
        body = "\n".join(f"    # {_words(rng, 12)}" for _ in range(rng.randint(5, 40)))
        files[f"misc/mod_{i:02}.py"] = f"def helper_{i}():\n{body}\n    return {i}\n"
    return write_tree(tmp_path / "repo", files)


def _pack(source: Path, question: str, budget: int, **kw):
    options = IngestOptions(walk=WalkConfig(use_git=False), **kw)
    return ingest_repository(source, question, budget, standin_count_tokens, options)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("budget", [60, 300, 1500, 20_000])
def test_never_over_budget_and_text_matches_counts(tmp_path: Path, seed: int, budget: int) -> None:
    result = _pack(_repo(tmp_path, seed), "how is the access token refreshed?", budget)
    context = result.context
    assert context.tokens <= budget
    assert context.tokens == standin_count_tokens(context.text)
    for chunk in context.chunks:
        assert chunk.tokens > 0 and chunk.path is not None
        assert chunk.start is not None and chunk.end is not None and chunk.start <= chunk.end
    assert result.language_counts["python"] == 26


def test_relevant_file_first_and_docs_lead(tmp_path: Path) -> None:
    context = _pack(_repo(tmp_path, 5), "how is the access token refreshed?", 1500).context
    kinds = [chunk.kind for chunk in context.chunks]
    assert kinds[0] == "doc" and context.chunks[0].path == "README.md"
    assert kinds.index("map") < kinds.index("file")
    first_file = next(c for c in context.chunks if c.kind == "file")
    assert first_file.path == "auth/token.py"
    assert context.text.startswith("### README.md (lines 1-2)\n# Shop")
    assert "### auth/token.py (lines 1-5)\nclass TokenRefresher:" in context.text


def test_deterministic(tmp_path: Path) -> None:
    repo = _repo(tmp_path, 9)
    first = _pack(repo, "where is the cart total computed", 800).context
    second = _pack(repo, "where is the cart total computed", 800).context
    assert first == second


def test_dropped_lists_skips_and_over_budget(tmp_path: Path) -> None:
    repo = _repo(tmp_path, 4)
    (repo / "blob.bin").write_bytes(b"\0\1\2")
    context = _pack(repo, "token refresh", 200).context
    reasons = {d.path: d.reason for d in context.dropped}
    assert reasons["blob.bin"].startswith("binary")
    assert "over budget" in reasons.values()
    shown = {c.path for c in context.chunks}
    assert not shown & {p for p, r in reasons.items() if r == "over budget"}


def test_large_file_gives_its_relevant_definitions(tmp_path: Path) -> None:
    rng = random.Random(2)
    functions = [
        f"def filler_{i}():\n" + "".join(f"    x = '{_words(rng, 10)}'\n" for _ in range(30))
        for i in range(40)
    ]
    functions.insert(23, "def checksum_crc32(data):\n    return crc_table(data)\n")
    repo = write_tree(tmp_path / "r", {"big.py": "\n".join(functions), "small.py": "x = 1\n"})
    context = _pack(repo, "how is the crc32 checksum computed", 3000).context
    definitions = [c for c in context.chunks if c.kind == "definition"]
    assert definitions and {c.path for c in definitions} == {"big.py"}
    start = "\n".join(functions[:23]).count("\n") + 2
    assert (start, start + 1) in {(c.start, c.end) for c in definitions}
    assert [c.start for c in definitions] == sorted(c.start for c in definitions)
    assert f"### big.py (lines {start}-{start + 1})\ndef checksum_crc32(data):" in context.text


def test_real_stdlib_question_finds_the_file() -> None:
    """On real code (the standard library's json package) the answer's file is packed in full."""
    result = _pack(STDLIB / "json", "how are JSON strings with escape sequences decoded?", 4000)
    files = [c.path for c in result.context.chunks if c.kind in ("file", "definition")]
    assert files[0] in ("decoder.py", "scanner.py")
    assert "decoder.py" in files


def test_ranked_beats_path_order_on_stdlib_email() -> None:
    question = "how does the feed parser split a multipart message at its boundaries"
    budget = 6000
    ranked = _pack(STDLIB / "email", question, budget).context
    naive = pack_in_path_order(STDLIB / "email", budget, standin_count_tokens)
    assert "feedparser.py" in {c.path for c in ranked.chunks if c.kind in ("file", "definition")}
    assert "feedparser.py" not in {c.path for c in naive.chunks}


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(BudgetError):
        PackConfig(budget=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no readable text files"):
        _pack(tmp_path / "empty", "q", 100)


def test_no_question_ranks_by_structure(tmp_path: Path) -> None:
    """Without a question, the file everyone imports outranks the leaves."""
    files = {"core.py": "def shared_helper():\n    return 1\n"}
    files |= {f"leaf{i}.py": f"def leaf{i}():\n    return shared_helper()\n" for i in range(6)}
    repo = write_tree(tmp_path / "r", files)
    context = _pack(repo, "", 10_000).context
    assert next(c.path for c in context.chunks if c.kind == "file") == "core.py"


def test_cache_dir_gives_the_same_context(tmp_path: Path) -> None:
    repo = _repo(tmp_path, 6)
    cold = _pack(repo, "token", 900, cache_dir=tmp_path / "cache").context
    warm = _pack(repo, "token", 900, cache_dir=tmp_path / "cache").context
    assert cold == warm == _pack(repo, "token", 900).context


@pytest.mark.usefixtures("qwen05_gguf")
@pytest.mark.parametrize("budget", [500, 4000])
def test_budget_holds_with_the_model_tokenizer(budget: int) -> None:
    """With a real model tokenizer (merges across part borders are possible) never over. The
    bundled 0.5B's, from the cache the tests share (it skips where the model is absent)."""
    from nsa_assist.model.source import load_tokenizer

    tokenizer, _ = load_tokenizer(QWEN_CODER_0_5B.name, home=shared_home())

    def count(text: str) -> int:
        return len(tokenizer.encode(text))

    options = IngestOptions(walk=WalkConfig(use_git=False))
    result = ingest_repository(STDLIB / "json", "how is JSON encoded", budget, count, options)
    assert 0.5 * budget < result.context.tokens <= budget
    assert result.context.tokens == count(result.context.text)


def test_deterministic_across_processes_with_different_hash_seeds() -> None:
    """Set and dict orders change with PYTHONHASHSEED; the packed context must not."""
    import subprocess
    import sys

    script = (
        "import sys, hashlib; sys.path.insert(0, 'tests');"
        "from pathlib import Path;"
        "from ingest_support import standin_count_tokens as c;"
        "from nsa_assist.ingest.pipeline import IngestOptions, ingest_repository;"
        "from nsa_assist.ingest.walk import WalkConfig;"
        f"r = ingest_repository(Path({str(STDLIB / 'email')!r}), 'how are headers folded', 3000,"
        " c, IngestOptions(walk=WalkConfig(use_git=False)));"
        "print(hashlib.sha256((r.context.text + repr(r.context.chunks)).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        ("README", True),
        ("readme.rst", True),
        ("ARCHITECTURE.md", True),
        ("LICENSE.txt", False),
        ("requirements.txt", False),
        ("Makefile", False),
        ("setup.py", False),
    ],
)
def test_which_top_level_files_lead_as_docs(path: str, doc: bool) -> None:
    from nsa_assist.ingest.languages import is_doc

    assert is_doc(path) is doc


def test_a_small_repository_is_packed_whole(tmp_path: Path) -> None:
    """Budget left after the ranked parts goes to the full text of the files ranked too low
    for it: with room for everything, every file is in the context and nothing is dropped."""
    repo = _repo(tmp_path, random.randrange(1 << 30))
    (repo / "auth" / "__init__.py").write_text('"""Authentication."""\n')
    context = _pack(repo, "how is the access token refreshed?", 20_000).context
    whole = {c.path for c in context.chunks if c.kind in ("file", "doc")}
    every = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    assert whole == every
    assert not context.dropped
    assert not [c for c in context.chunks if c.kind == "signatures"]
    assert context.tokens <= 20_000


@pytest.mark.parametrize("budget", [250, 600, 1200])
def test_full_text_of_low_ranked_files_only_in_place_of_their_signatures(
    tmp_path: Path, budget: int
) -> None:
    """At a tight budget a low-ranked file shows its signatures or its full text, never
    both, and the best file still comes first."""
    repo = _repo(tmp_path, random.randrange(1 << 30))
    context = _pack(repo, "how is the access token refreshed?", budget).context
    assert context.tokens <= budget
    kinds: dict[str, set[str]] = {}
    for chunk in context.chunks:
        kinds.setdefault(chunk.path, set()).add(chunk.kind)
    assert not [path for path, k in kinds.items() if {"file", "signatures"} <= k]
    assert "file" in kinds.get("auth/token.py", set())


def test_path_order_stops_counting_when_full_but_lists_every_file(tmp_path: Path) -> None:
    rng = random.Random()
    files = {f"f{i:03}.py": f"x = '{_words(rng, rng.randint(20, 200))}'\n" for i in range(120)}
    repo = write_tree(tmp_path / "r", files)
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return standin_count_tokens(text)

    context = pack_in_path_order(repo, 400, count)
    listed = {c.path for c in context.chunks} | {d.path for d in context.dropped}
    assert listed == set(files)
    assert all(d.reason.startswith("over budget") for d in context.dropped)
    assert context.dropped and len(counted) < len(files) // 2
    assert context.tokens == standin_count_tokens(context.text) <= 400


def test_the_collector_is_paused_while_ingesting_and_restored(tmp_path: Path) -> None:
    import gc

    from nsa_assist.ingest.pipeline import collector_paused

    seen: list[bool] = []

    def count(text: str) -> int:
        seen.append(gc.isenabled())
        return standin_count_tokens(text)

    assert gc.isenabled()
    options = IngestOptions(walk=WalkConfig(use_git=False))
    ingest_repository(_repo(tmp_path, 4), "token", 900, count, options)
    assert seen and not any(seen) and gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
