"""`nsa summarize FILE.pdf`: plan a summary that fits the model, run it, stream it with pages."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from .guard import fail, user_errors_as_exit
from .options import ModelOption, StreamJsonOption
from .runtime import ModelChoice, choose_model, load_with_progress
from .settings import PROMPT_MARGIN, Settings, default_budget

if TYPE_CHECKING:
    from nsa_assist.ingest.pdf import PdfDocument
    from nsa_assist.ingest.summarize_plan import SummaryPlan
    from nsa_assist.model.loader import LoadedModel

    from .summary_run import RunConfig, Step, StepResult

STEP_SHARE = 4
"""An inner summary gets at most this fraction of the budget, so a reduce joins several."""
MIN_STEP_TOKENS = 16
MAX_BATCH = 8
"""Map steps decoded together at most (the engine queues the rest)."""


@dataclass(frozen=True, slots=True)
class SummarizeOptions:
    file: Path
    budget: int | None
    max_new_tokens: int
    as_json: bool
    password: str | None


def summarize_command(
    file: Annotated[Path, typer.Argument(help="The PDF to summarize.")],
    model: ModelOption = None,
    budget: Annotated[
        int | None,
        typer.Option(help="Prompt tokens per model call (default: 8192 on CPU, 65536 on GPU)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest summary, in tokens.")] = 512,
    as_json: StreamJsonOption = False,
    password: Annotated[str | None, typer.Option(help="Opens an encrypted PDF.")] = None,
) -> None:
    """Summarize a long PDF: one pass when it fits, else sections then joins; cites pages."""
    options = SummarizeOptions(file, budget, max_new_tokens, as_json, password)
    with user_errors_as_exit():
        document = _read(options)  # file errors come before the model loads
        _summarize(options, document, choose_model(model), Settings.from_env())


def _read(options: SummarizeOptions) -> PdfDocument:
    from nsa_assist.ingest.pdf import read_pdf

    if not options.file.exists():
        raise fail(f"file not found: {options.file}")
    if not options.file.is_file() or options.file.suffix.lower() != ".pdf":
        raise fail(f"nsa summarize reads PDF files; use `nsa ask` for {options.file}")
    if options.budget is not None and options.budget <= 0:
        raise fail(f"--budget must be positive, got {options.budget}")
    if options.max_new_tokens <= 0:
        raise fail(f"--max-new-tokens must be positive, got {options.max_new_tokens}")
    document = read_pdf(options.file, options.password)
    if not any(page.has_text for page in document.pages):
        raise fail(f"{options.file.name}: no page has a text layer (a scan?); nothing to read")
    return document


def _summarize(
    options: SummarizeOptions, document: PdfDocument, choice: ModelChoice, settings: Settings
) -> None:
    err = Console(stderr=True)
    started = time.perf_counter()
    loaded = load_with_progress(choice, settings, err)
    loaded_at = time.perf_counter()
    budget = options.budget or default_budget(choice.device)
    plan, config = _plan(document, loaded, budget, options.max_new_tokens)
    planned_at = time.perf_counter()
    shape = "one pass" if plan.single_pass else f"{len(plan.maps)} parts, {len(plan.reduces)} joins"
    err.print(f"[dim]{len(document.pages)} pages · {shape}[/]")
    results = _run(plan, config, document, loaded, budget, options, err)
    finished = time.perf_counter()
    summary = results[plan.final].text
    timings = {
        "load": loaded_at - started,
        "plan": planned_at - loaded_at,
        "run": finished - planned_at,
        "total": finished - started,
    }
    if options.as_json:
        _print_json(summary, loaded.name, plan, results, len(document.pages), timings)
        return
    sys.stdout.write("\n")
    err.print(
        f"[dim]{loaded.name} · steps: {len(results)} · run {timings['run']:.1f} s · "
        f"total {timings['total']:.1f} s[/]"
    )


def _plan(
    document: PdfDocument, loaded: LoadedModel, budget: int, max_new_tokens: int
) -> tuple[SummaryPlan, RunConfig]:
    """Budgets for one step's document text and for the summaries steps write."""
    from nsa_assist.ingest.summarize_plan import PlanConfig, plan_summary

    from .summary_run import SUMMARY_HEADER_TOKENS, RunConfig, framing_tokens

    tokenizer = loaded.tokenizer
    text_budget = budget - framing_tokens(tokenizer) - PROMPT_MARGIN
    longest_step = text_budget // STEP_SHARE - SUMMARY_HEADER_TOKENS
    if longest_step < MIN_STEP_TOKENS:
        raise fail(f"--budget {budget} is too small to summarize in steps; try 1024 or more")
    step_tokens = min(max_new_tokens, longest_step)
    plan_config = PlanConfig(text_budget, text_budget, step_tokens + SUMMARY_HEADER_TOKENS)
    plan = plan_summary(document, plan_config, lambda text: len(tokenizer.encode(text)))
    return plan, RunConfig(step_tokens=step_tokens, final_tokens=max_new_tokens)


def _run(
    plan: SummaryPlan,
    config: RunConfig,
    document: PdfDocument,
    loaded: LoadedModel,
    budget: int,
    options: SummarizeOptions,
    err: Console,
) -> dict[str, StepResult]:
    """Walk the plan with `step k of n` on stderr; stream the final summary to stdout."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nsa_assist.workers.engine import Engine, EngineConfig

    from .summary_run import PlanRunner

    engine_config = EngineConfig(
        max_batch_size=min(MAX_BATCH, len(plan.maps)),
        max_seq_len=budget + max(config.final_tokens, config.step_tokens),
    )
    runner = PlanRunner(Engine(loaded.model, engine_config), loaded.tokenizer, document, config)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("summarizing", total=len(plan.maps) + len(plan.reduces))

    def on_wave(wave: list[Step], done: int, total: int) -> None:
        first, last = done + 1, done + len(wave)
        steps = f"step {first} of {total}" if first == last else f"steps {first}-{last} of {total}"
        kind = "reading" if wave[0].id.startswith("m") else "joining"
        pages = f"pp. {wave[0].pages[0]}-{wave[-1].pages[1]}"
        bar.update(task, completed=done, description=f"{steps}: {kind} {pages}")

    def on_final_text(piece: str) -> None:
        if bar.live.is_started:
            bar.stop()  # the summary starts: the bar must not redraw over it
        if piece and not options.as_json:
            sys.stdout.write(piece)
            sys.stdout.flush()

    bar.start()
    try:
        return runner.run(plan, on_wave, on_final_text)
    finally:
        bar.stop()


def _print_json(
    summary: str,
    model: str,
    plan: SummaryPlan,
    results: dict[str, StepResult],
    page_count: int,
    timings: dict[str, float],
) -> None:
    from .summary_run import cited_pages

    steps = [
        {
            "id": r.id,
            "kind": r.kind,
            "title": r.title,
            "pages": list(r.pages),
            "prompt_tokens": r.prompt_tokens,
            "output_tokens": r.output_tokens,
            "finish_reason": r.finish_reason,
            "wave_seconds": round(r.seconds, 3),
        }
        for r in results.values()
    ]
    payload = {
        "summary": summary,
        "model": model,
        "single_pass": plan.single_pass,
        "pages": page_count,
        "pages_cited": cited_pages(summary, page_count),
        "steps": steps,
        "timings": {key: round(value, 3) for key, value in timings.items()},
    }
    print(json.dumps(payload, ensure_ascii=False))
