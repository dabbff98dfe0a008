"""`nsa ingest SOURCE`: show what would go into the model's context, without running it."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from .guard import fail, user_errors_as_exit
from .settings import Settings

if TYPE_CHECKING:
    from nsa_assist.ingest.context import Chunk, CountTokens
    from nsa_assist.ingest.pipeline import Ingested

DEFAULT_BUDGET = 8_192
"""What `nsa ask` packs on a CPU; pass --budget 65536 for the GPU model's context."""
DROPPED_SHOWN = 15
PARSE_CACHE_DIR = "parse-cache"


def ingest_command(
    source: Annotated[Path, typer.Argument(help="A folder, git checkout, archive, file or PDF.")],
    question: Annotated[
        str, typer.Option(help="Rank the source for this question (else by structure).")
    ] = "",
    budget: Annotated[
        int, typer.Option(help="Context budget in tokens (8192 is what `nsa ask` uses on a CPU).")
    ] = DEFAULT_BUDGET,
    model: Annotated[
        str | None,
        typer.Option(
            help="Whose tokenizer counts: registry name, .gguf, HF folder or tokenizer.json "
            "[default: the CPU default model]."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    password: Annotated[str | None, typer.Option(help="Opens an encrypted PDF.")] = None,
) -> None:
    """Show the files (or pages) that would be packed, their tokens, and what was dropped."""
    from nsa_assist.ingest.pipeline import IngestOptions, ingest_source

    with user_errors_as_exit():
        if budget <= 0:
            raise fail(f"--budget must be positive, got {budget}")
        settings = Settings.from_env()
        name, count_tokens, identity = token_counter(model, settings.home)
        options = IngestOptions(
            cache_dir=settings.home / PARSE_CACHE_DIR,
            workers=os.cpu_count() or 1,
            password=password,
            tokenizer=identity,
        )
        result = ingest_source(source, question, budget, count_tokens, options)
    if as_json:
        print(json.dumps(_as_json(result, name), ensure_ascii=False))
    else:
        _print_table(result, name)


def token_counter(model: str | None, home: Path) -> tuple[str, CountTokens, str]:
    """The model's own tokenizer as a `count_tokens` function, without loading the model,
    with its display name and identity (which keys cached token counts).

    `model` may also be a bare tokenizer.json; None means this machine's default model."""
    given = Path(model).expanduser() if model else None
    if given is not None and given.is_file() and given.suffix == ".json":
        from tokenizers import Tokenizer

        from nsa_assist.model.tokenizer import file_identity

        raw = Tokenizer.from_file(str(given))
        count = lambda text: len(raw.encode(text, add_special_tokens=False).ids)
        return given.name, count, file_identity(given)
    from nsa_assist.model.source import load_tokenizer

    from .progress import stage_progress
    from .runtime import announce_first_use, choose_model

    ref = choose_model(model).ref
    err = Console(stderr=True)
    announce_first_use(ref, home, err)
    with stage_progress(err) as on_progress:
        tokenizer, name = load_tokenizer(ref, home=home, progress=on_progress)
    return name, lambda text: len(tokenizer.encode(text)), tokenizer.identity


def _chunk_json(chunk: Chunk) -> dict:
    where = {"page": chunk.page} if chunk.page is not None else {"path": chunk.path}
    span = {} if chunk.page is not None else {"start": chunk.start, "end": chunk.end}
    return where | span | {"tokens": chunk.tokens, "kind": chunk.kind}


def _as_json(result: Ingested, model_name: str) -> dict:
    context = result.context
    return {
        "tokens": context.tokens,
        "budget": context.budget,
        "model": model_name,
        "chunks": [_chunk_json(chunk) for chunk in context.chunks],
        "dropped": [{"path": d.path, "reason": d.reason} for d in context.dropped],
        "language_counts": result.language_counts,
        "notes": list(result.notes),
    }


def _print_table(result: Ingested, model_name: str) -> None:
    context = result.context
    out = Console()
    table = Table(title=f"context: {context.tokens:,} of {context.budget:,} tokens ({model_name})")
    for column, justify in (
        ("kind", "left"),
        ("source", "left"),
        ("lines / page", "right"),
        ("tokens", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for chunk in context.chunks:
        where = f"p. {chunk.page}" if chunk.page is not None else f"{chunk.start}-{chunk.end}"
        table.add_row(chunk.kind, chunk.path or "", where, f"{chunk.tokens:,}")
    out.print(table)
    languages = ", ".join(f"{name} {count:,}" for name, count in result.language_counts.items())
    out.print(f"read: {languages}", highlight=False)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    if context.dropped:
        reasons = Counter(d.reason for d in context.dropped)
        summary = "; ".join(f"{reason}: {count:,}" for reason, count in reasons.most_common())
        out.print(f"dropped {len(context.dropped):,} ({summary})", highlight=False)
        for item in context.dropped[:DROPPED_SHOWN]:
            out.print(f"  {item.path}  [dim]{item.reason}[/]", highlight=False)
        if len(context.dropped) > DROPPED_SHOWN:
            out.print(f"  … and {len(context.dropped) - DROPPED_SHOWN:,} more (--json lists all)")
