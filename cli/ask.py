"""`nsa ask SOURCE QUESTION`: pack the source, run the model, stream a cited answer."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from .guard import fail, user_errors_as_exit
from .ingest import PARSE_CACHE_DIR
from .options import AnswerTokensOption, BudgetOption, ModelOption, StreamJsonOption
from .runtime import ModelChoice, choose_model, load_with_progress
from .settings import PROMPT_MARGIN, Settings, default_budget

if TYPE_CHECKING:
    from nsa_assist.ingest.context import Context
    from nsa_assist.ingest.walk import WalkResult
    from nsa_assist.model.loader import LoadedModel
    from nsa_assist.model.tokenizer import ModelTokenizer
    from nsa_assist.workers.engine import Completion


@dataclass(frozen=True, slots=True)
class AskOptions:
    source: Path
    question: str
    budget: int | None
    max_new_tokens: int
    temperature: float
    as_json: bool
    queue: bool


def ask_command(
    source: Annotated[Path, typer.Argument(help="A folder, git checkout, archive, file or PDF.")],
    question: Annotated[str, typer.Argument(help="Your question, in quotes.")],
    model: ModelOption = None,
    budget: BudgetOption = None,
    max_new_tokens: AnswerTokensOption = 512,
    temperature: Annotated[float, typer.Option(help="0 answers greedily.")] = 0.0,
    as_json: StreamJsonOption = False,
    queue: Annotated[
        bool, typer.Option("--queue", help="Run on a `nsa worker` through the job queue.")
    ] = False,
) -> None:
    """Answer a question about a codebase or a document, citing path:line or pages."""
    options = AskOptions(source, question, budget, max_new_tokens, temperature, as_json, queue)
    with user_errors_as_exit():
        _validate(options)
        choice, settings = choose_model(model), Settings.from_env()
        if options.queue:
            _answer_via_queue(options, choice, settings)
        else:
            _answer_locally(options, choice, settings)


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


def _walk(options: AskOptions, settings: Settings) -> WalkResult | None:
    """A folder's (or archive's) text files, read before the model loads, so a source with
    none fails at once rather than after a first-use download; None for a PDF."""
    from nsa_assist.ingest.pipeline import IngestOptions, is_pdf, walk_repository

    if is_pdf(options.source):
        return None
    return walk_repository(options.source, IngestOptions(cache_dir=settings.home / PARSE_CACHE_DIR))


def _pack(
    options: AskOptions, budget: int, tokenizer: ModelTokenizer, settings: Settings, err: Console,
    walked: WalkResult | None = None,
) -> Context:  # fmt: skip
    """The ranked context for the question, leaving room for the prompt's framing."""
    from nsa_assist.ingest.pipeline import IngestOptions, ingest_source
    from nsa_assist.ingest.prompt import framing_text

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text))

    framing = count_tokens(framing_text(options.question)) + PROMPT_MARGIN
    if framing >= budget:
        raise fail(f"the question alone needs {framing} tokens, over the budget of {budget}")
    ingest_options = IngestOptions(
        cache_dir=settings.home / PARSE_CACHE_DIR,
        workers=os.cpu_count() or 1,
        tokenizer=tokenizer.identity,
    )
    ingested = ingest_source(
        options.source, options.question, budget - framing, count_tokens, ingest_options, walked
    )
    for note in ingested.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    context = ingested.context
    err.print(
        f"[dim]context: {context.tokens:,} of {context.budget:,} tokens, "
        f"{len(context.chunks)} chunks from {len(context.sources)} sources[/]"
    )
    if context.dropped:
        shown = ", ".join(f"{d.path} ({d.reason})" for d in context.dropped[:5])
        more = f" and {len(context.dropped) - 5} more" if len(context.dropped) > 5 else ""
        err.print(
            f"[yellow]dropped {len(context.dropped)}:[/] {shown}{more}",
            highlight=False,
            soft_wrap=True,
        )
    return context


def _default_budget(options: AskOptions, choice: ModelChoice) -> int:
    return options.budget or default_budget(choice.device)


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _write_cited(answer: str, context: Context) -> None:
    """After the answer: the line ranges of the files it names, as the context held them, so
    a citation without its line still leads somewhere exact."""
    cited = context.cited_in(answer)
    if cited:
        _write("sources: " + ", ".join(chunk.citation() for chunk in cited) + "\n")


def _answer_locally(options: AskOptions, choice: ModelChoice, settings: Settings) -> None:
    err = Console(stderr=True)
    walked = _walk(options, settings)
    started = time.perf_counter()
    loaded = load_with_progress(choice, settings, err)
    load_seconds = time.perf_counter() - started
    budget = _default_budget(options, choice)
    context = _pack(options, budget, loaded.tokenizer, settings, err, walked)
    answer, completion, prompt_tokens = _generate(options, loaded, context, err)
    if not options.as_json:
        _write("\n")
        _write_cited(answer, context)
        rate = len(completion.token_ids) / max(completion.decode_seconds, 1e-9)
        err.print(
            f"[dim]{loaded.name} · load {load_seconds:.1f} s · prefill "
            f"{completion.prefill_seconds:.1f} s ({prompt_tokens:,} tokens) · "
            f"decode {rate:.1f} tokens/s[/]",
            soft_wrap=True,
        )
        return
    timings = {
        "load": load_seconds,
        "prefill": completion.prefill_seconds,
        "decode": completion.decode_seconds,
    }
    _print_json(answer, loaded.name, context, prompt_tokens, completion, timings)


def _generate(
    options: AskOptions, loaded: LoadedModel, context: Context, err: Console
) -> tuple[str, Completion, int]:
    """Prefill with a bar on stderr, then stream the answer to stdout (unless --json)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from nsa_assist.ingest.prompt import build_messages
    from nsa_assist.workers.engine import Engine, EngineConfig, Request, SamplingParams

    tokenizer = loaded.tokenizer
    messages = build_messages(context.text, options.question)
    prompt_ids = tokenizer.encode(tokenizer.apply_chat(messages))
    params = SamplingParams(
        temperature=options.temperature,
        max_new_tokens=options.max_new_tokens,
        stop_token_ids=tokenizer.stop_token_ids,
    )
    max_seq_len = len(prompt_ids) + options.max_new_tokens
    loaded.model.extend_context(max_seq_len)  # YaRN past the trained context, else a no-op
    engine = Engine(loaded.model, EngineConfig(max_batch_size=1, max_seq_len=max_seq_len))
    decoder = tokenizer.stream_decoder()
    pieces: list[str] = []
    bar = Progress(
        TextColumn("reading the prompt"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} tokens"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("prefill", total=len(prompt_ids))

    def on_prefill(_: str, done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    def on_token(_: str, token_id: int) -> None:
        if bar.live.is_started:
            bar.stop()  # the answer starts: the bar must not redraw over it
        piece = decoder.push(token_id)
        pieces.append(piece)
        if piece and not options.as_json:
            _write(piece)

    bar.start()
    try:
        completion = engine.generate([Request("ask", prompt_ids, params)], on_token, on_prefill)[0]
    finally:
        bar.stop()
    return "".join(pieces), completion, len(prompt_ids)


def _print_json(
    answer: str,
    model: str,
    context: Context,
    prompt_tokens: int,
    completion: Completion,
    timings: dict[str, float],
) -> None:
    result = {
        "answer": answer,
        "model": model,
        "context_tokens": context.tokens,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": len(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "timings": {key: round(value, 3) for key, value in timings.items()},
        "sources": context.sources,
        "citations": [chunk.citation() for chunk in context.chunks],
        "cited": [chunk.citation() for chunk in context.cited_in(answer)],
        "dropped": [{"path": d.path, "reason": d.reason} for d in context.dropped],
    }
    print(json.dumps(result, ensure_ascii=False))


def _answer_via_queue(options: AskOptions, choice: ModelChoice, settings: Settings) -> None:
    """Pack here (workers need not see the files), run on a worker, stream its events."""
    from nsa_assist.services.jobs import JobKind, JobSpec
    from nsa_assist.services.runners import load_tokenizer

    from .jobs import ask_via_queue, open_queue, require_live_worker

    err = Console(stderr=True)
    with open_queue(settings) as queue:
        require_live_worker(queue)
        walked = _walk(options, settings)
        tokenizer = load_tokenizer(choice.ref, settings.home)
        budget = _default_budget(options, choice)
        context = _pack(options, budget, tokenizer, settings, err, walked)
        spec = JobSpec(
            kind=JobKind.ASK,
            source=str(options.source.resolve()),
            question=options.question,
            max_new_tokens=options.max_new_tokens,
        )
        on_text = (lambda _: None) if options.as_json else _write
        result = ask_via_queue(queue, spec, context.text, on_text)
    if not options.as_json:
        _write("\n")
        _write_cited(result.text, context)
        err.print(f"[dim]job {result.job_id} on {result.worker} · {result.seconds:.1f} s[/]")
        return
    payload = {
        "answer": result.text,
        "model": choice.ref,
        "job_id": result.job_id,
        "worker": result.worker,
        "context_tokens": context.tokens,
        "prompt_tokens": result.prompt_tokens,
        "generated_tokens": result.completion_tokens,
        "finish_reason": result.finish_reason,
        "timings": {"total": round(result.seconds, 3)},
        "sources": context.sources,
        "citations": [chunk.citation() for chunk in context.chunks],
        "cited": [chunk.citation() for chunk in context.cited_in(result.text)],
    }
    print(json.dumps(payload, ensure_ascii=False))
