"""`nsa ask SOURCE QUESTION`: pack the source, run the model, stream a cited answer."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nsa_assist.ingest.context import Context

from .guard import fail, user_errors_as_exit
from .ingest import PARSE_CACHE_DIR
from .runtime import ModelChoice, choose_model, load_with_progress
from .settings import Settings

CPU_BUDGET = 8_192
GPU_BUDGET = 65_536
PROMPT_MARGIN = 32
"""Tokens kept free for the chat template's own markers and BPE merges across file borders."""


@dataclass(frozen=True, slots=True)
class AskOptions:
    source: Path
    question: str
    budget: int | None
    max_new_tokens: int
    temperature: float
    as_json: bool


def ask_command(
    source: Annotated[Path, typer.Argument(help="A folder or a file to ask about.")],
    question: Annotated[str, typer.Argument(help="Your question, in quotes.")],
    model: Annotated[
        str | None,
        typer.Option(help="Registry name, a .gguf file, or a Hugging Face-style folder."),
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(help="Context budget in tokens [default: 8192 on CPU, 65536 on GPU]."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 512,
    temperature: Annotated[float, typer.Option(help="0 answers greedily.")] = 0.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of streaming.")
    ] = False,
) -> None:
    """Answer a question about a codebase or a document, citing path:line."""
    options = AskOptions(source, question, budget, max_new_tokens, temperature, as_json)
    with user_errors_as_exit():
        _validate(options)
        _run(options, choose_model(model), Settings.from_env())


def _validate(options: AskOptions) -> None:
    if not options.source.exists():
        raise fail(f"source not found: {options.source}")
    if not options.question.strip():
        raise fail("the question is empty")
    if options.budget is not None and options.budget <= 0:
        raise fail(f"--budget must be positive, got {options.budget}")
    if options.max_new_tokens <= 0:
        raise fail(f"--max-new-tokens must be positive, got {options.max_new_tokens}")
    if options.temperature < 0:
        raise fail(f"--temperature must be >= 0, got {options.temperature}")


def _run(options: AskOptions, choice: ModelChoice, settings: Settings) -> None:
    from nsa_assist.ingest.pipeline import IngestOptions, ingest_source
    from nsa_assist.ingest.prompt import build_messages, framing_text
    from nsa_assist.workers.engine import Engine, EngineConfig, Request, SamplingParams

    err = Console(stderr=True)
    started = time.perf_counter()
    loaded = load_with_progress(choice, settings, err)
    load_seconds = time.perf_counter() - started
    tokenizer = loaded.tokenizer

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text))

    budget = options.budget or (GPU_BUDGET if choice.device == "cuda" else CPU_BUDGET)
    framing = count_tokens(framing_text(options.question)) + PROMPT_MARGIN
    if framing >= budget:
        raise fail(f"the question alone needs {framing} tokens, over the budget of {budget}")
    ingest_options = IngestOptions(
        cache_dir=settings.home / PARSE_CACHE_DIR, workers=os.cpu_count() or 1
    )
    ingested = ingest_source(
        options.source, options.question, budget - framing, count_tokens, ingest_options
    )
    context = ingested.context
    _report_packing(err, context, ingested.notes)

    prompt = tokenizer.apply_chat(build_messages(context.text, options.question))
    prompt_ids = tokenizer.encode(prompt)
    params = SamplingParams(
        temperature=options.temperature,
        max_new_tokens=options.max_new_tokens,
        stop_token_ids=tokenizer.stop_token_ids,
    )
    engine = Engine(
        loaded.model,
        EngineConfig(max_batch_size=1, max_seq_len=len(prompt_ids) + options.max_new_tokens),
    )
    decoder = tokenizer.stream_decoder()
    pieces: list[str] = []

    def on_token(_: str, token_id: int) -> None:
        piece = decoder.push(token_id)
        pieces.append(piece)
        if not options.as_json and piece:
            sys.stdout.write(piece)
            sys.stdout.flush()

    with err.status(f"reading {len(prompt_ids):,} prompt tokens…"):
        completion = engine.generate([Request("ask", prompt_ids, params)], on_token=on_token)[0]
    if not options.as_json:
        sys.stdout.write("\n")
        decode_rate = len(completion.token_ids) / max(completion.decode_seconds, 1e-9)
        err.print(
            f"[dim]{loaded.name} · context {context.tokens:,} tokens from "
            f"{len(context.chunks)} files · load {load_seconds:.1f} s · prefill "
            f"{completion.prefill_seconds:.1f} s · decode {decode_rate:.1f} tokens/s[/]"
        )
        return
    result = {
        "answer": "".join(pieces),
        "model": loaded.name,
        "context_tokens": context.tokens,
        "prompt_tokens": len(prompt_ids),
        "generated_tokens": len(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "timings": {
            "load": round(load_seconds, 3),
            "prefill": round(completion.prefill_seconds, 3),
            "decode": round(completion.decode_seconds, 3),
        },
        "sources": context.sources,
        "dropped": [{"path": d.path, "reason": d.reason} for d in context.dropped],
    }
    print(json.dumps(result, ensure_ascii=False))


def _report_packing(err: Console, context: Context, notes: tuple[str, ...]) -> None:
    for note in notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    err.print(
        f"[dim]context: {context.tokens:,} of {context.budget:,} tokens, "
        f"{len(context.chunks)} files[/]"
    )
    if context.dropped:
        shown = ", ".join(f"{d.path} ({d.reason})" for d in context.dropped[:5])
        more = f" and {len(context.dropped) - 5} more" if len(context.dropped) > 5 else ""
        err.print(
            f"[yellow]dropped {len(context.dropped)}:[/] {shown}{more}",
            highlight=False,
            soft_wrap=True,
        )
