"""The naive packer: a folder's text files in path order, cut to the token budget.

It is the baseline the ranked packer is measured against, and what `nsa ask` used before
ranking existed. Each file goes in whole, under a `### path` header, until the budget is
met; a file that does not fit is dropped with the reason, and so is everything after it
that does not fit either (a smaller later file may still fit). Files too long to fit in
what is left are not counted at all: a full budget costs no more tokenizer calls.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .context import MAX_CHARS_PER_TOKEN, Chunk, Context, CountTokens, Dropped
from .errors import IngestError

MAX_FILE_BYTES = 1_000_000
"""Files larger than this are skipped: they are data or generated, not code to read."""

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv"})


def _text_of(path: Path) -> str | None:
    """The file's text, or None for binaries (NUL bytes or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _files_in_path_order(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        found.extend(Path(dirpath) / name for name in sorted(filenames))
    return found


def line_count(text: str) -> int:
    """Number of lines as an editor shows them (a last line without a newline counts)."""
    return max(text.count("\n") + (0 if text.endswith("\n") else 1), 1)


def render_file(rel: str, text: str) -> str:
    """How one file appears in the prompt: a header naming its path and lines, then its text."""
    body = text if text.endswith("\n") else text + "\n"
    return f"### {rel} (lines 1-{line_count(text)})\n{body}\n"


def pack_in_path_order(source: Path, budget: int, count_tokens: CountTokens) -> Context:
    """Pack `source` (a folder or one file) into at most `budget` tokens, in path order."""
    if not source.exists():
        raise IngestError(f"source not found: {source}")
    if budget <= 0:
        raise IngestError(f"budget must be positive, got {budget}")
    root = source if source.is_dir() else source.parent
    parts: list[str] = []
    chunks: list[Chunk] = []
    dropped: list[Dropped] = []
    used = 0
    readable = 0
    for path in _files_in_path_order(source):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file():
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            dropped.append(Dropped(rel, f"larger than {MAX_FILE_BYTES} bytes"))
            continue
        text = _text_of(path)
        if text is None:
            dropped.append(Dropped(rel, "binary or not UTF-8"))
            continue
        readable += 1
        rendered = render_file(rel, text)
        left = budget - used
        if len(rendered) > left * MAX_CHARS_PER_TOKEN:  # cannot fit: not worth counting
            least = math.ceil(len(rendered) / MAX_CHARS_PER_TOKEN)
            dropped.append(Dropped(rel, f"over budget (at least {least} tokens, {left} left)"))
            continue
        tokens = count_tokens(rendered)
        if tokens > left:
            dropped.append(Dropped(rel, f"over budget ({tokens} tokens, {left} left)"))
            continue
        parts.append(rendered)
        used += tokens
        chunks.append(Chunk(tokens=tokens, path=rel, start=1, end=line_count(text)))
    if readable == 0:
        raise IngestError(f"no readable text files in {source}")
    return Context(
        text="".join(parts),
        tokens=used,
        budget=budget,
        chunks=tuple(chunks),
        dropped=tuple(dropped),
    )
