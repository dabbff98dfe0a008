"""Run a `SummaryPlan` on the local engine: every map step in one batch, then reduce waves.

The plan (ingest/summarize_plan.py) is data; this walks it. A wave is every step whose
inputs are done, decoded together in one `Engine.generate` call. The final step's text is
streamed as it is chosen; the others are collected for the steps that join them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nsa_assist.ingest.summarize_plan import MapStep, ReduceStep, SummaryPlan, step_text

if TYPE_CHECKING:
    from nsa_assist.ingest.pdf import PdfDocument
    from nsa_assist.model.tokenizer import ModelTokenizer
    from nsa_assist.workers.engine import Engine, Request

SYSTEM_PROMPT = (
    "You are nsa-assist. You summarize documents faithfully, from the given text only. "
    "Pages are marked `### p. N`; cite the pages each point comes from as p. N."
)
SUMMARY_HEADER_TOKENS = 24
"""Room for the `### Summary of pp. A-B (title)` line above each summary a reduce joins."""
_PAGE_CITE = re.compile(r"\bpp?\.\s*(\d+)(?:\s*[-–]\s*(\d+))?")

Step = MapStep | ReduceStep
OnWave = Callable[[list[Step], int, int], None]
"""(steps starting now, steps done before them, steps in all)."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How long each summary may get: `step_tokens` for inner steps, `final_tokens` for the
    last one; temperature 0 is greedy."""

    step_tokens: int
    final_tokens: int
    temperature: float = 0.0

    def __post_init__(self) -> None:
        assert self.step_tokens > 0 and self.final_tokens > 0


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step's summary and its cost; `pages` is the (first, last) page it covers and
    `seconds` the time of the batch (wave) it was decoded in."""

    id: str
    kind: str
    title: str
    pages: tuple[int, int]
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    seconds: float
    text: str


def map_messages(text: str, title: str, whole: bool) -> list[dict[str, str]]:
    """The chat for one map step (or the single pass over a whole document)."""
    what = "this document" if whole else f"this part of a document ({title})"
    user = f"Summarize {what}. Cite pages as p. N.\n\n{text}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def reduce_messages(inputs: list[StepResult]) -> list[dict[str, str]]:
    """The chat that joins summaries of consecutive parts into one, keeping their citations."""
    parts = "".join(
        f"### Summary of pp. {r.pages[0]}-{r.pages[1]} ({r.title})\n{r.text.strip()}\n\n"
        for r in inputs
    )
    user = (
        "These are summaries of consecutive parts of one document. Join them into one "
        f"summary of the whole, keeping their page citations (p. N).\n\n{parts}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def framing_tokens(tokenizer: ModelTokenizer) -> int:
    """Prompt tokens around the document text in the wordier of the two step kinds."""
    empty = StepResult("", "", "", (0, 0), 0, 0, "", 0.0, "")
    chats = (map_messages("", "x" * 40, whole=False), reduce_messages([empty]))
    return max(len(tokenizer.encode(tokenizer.apply_chat(chat))) for chat in chats)


def cited_pages(text: str, page_count: int) -> list[int]:
    """Pages a summary cites (`p. 3`, `pp. 4-6`), in order, only those the document has."""
    pages: set[int] = set()
    for match in _PAGE_CITE.finditer(text):
        first = int(match.group(1))
        last = int(match.group(2) or first)
        pages.update(n for n in range(first, min(last, page_count) + 1) if n >= 1)
    return sorted(pages)


class PlanRunner:
    """Walks one plan over one document on one engine."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: ModelTokenizer,
        document: PdfDocument,
        config: RunConfig,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.document = document
        self.config = config

    def run(
        self, plan: SummaryPlan, on_wave: OnWave, on_final_text: Callable[[str], None]
    ) -> dict[str, StepResult]:
        """Every step's result by id; `on_final_text` receives the final summary as it grows."""
        results: dict[str, StepResult] = {}
        total = len(plan.maps) + len(plan.reduces)
        for wave in plan_waves(plan):
            on_wave(wave, len(results), total)
            results.update(self._run_wave(wave, plan, results, on_final_text))
        return results

    def _run_wave(
        self,
        wave: list[Step],
        plan: SummaryPlan,
        done: dict[str, StepResult],
        on_final_text: Callable[[str], None],
    ) -> dict[str, StepResult]:
        requests = [self._request(step, plan, done) for step in wave]
        decoder = self.tokenizer.stream_decoder()

        def on_token(request_id: str, token_id: int) -> None:
            if request_id == plan.final:
                on_final_text(decoder.push(token_id))

        started = time.perf_counter()
        completions = self.engine.generate(requests, on_token)
        seconds = time.perf_counter() - started
        return {
            step.id: StepResult(
                step.id,
                "map" if isinstance(step, MapStep) else "reduce",
                _title(step, done),
                step.pages,
                completion.prompt_tokens,
                len(completion.token_ids),
                completion.finish_reason,
                seconds,
                self.tokenizer.decode(completion.token_ids),
            )
            for step, completion in zip(wave, completions, strict=True)
        }

    def _request(self, step: Step, plan: SummaryPlan, done: dict[str, StepResult]) -> Request:
        from nsa_assist.workers.engine import Request
        from nsa_assist.workers.sampling import SamplingParams

        if isinstance(step, MapStep):
            text = step_text(self.document, step)
            messages = map_messages(text, step.title, whole=plan.single_pass)
        else:
            messages = reduce_messages([done[i] for i in step.inputs])
        final = step.id == plan.final
        params = SamplingParams(
            temperature=self.config.temperature,
            max_new_tokens=self.config.final_tokens if final else self.config.step_tokens,
            stop_token_ids=self.tokenizer.stop_token_ids,
        )
        prompt_ids = self.tokenizer.encode(self.tokenizer.apply_chat(messages))
        return Request(step.id, prompt_ids, params)


def plan_waves(plan: SummaryPlan) -> list[list[Step]]:
    """All maps together, then each run of reduces whose inputs are already done."""
    waves: list[list[Step]] = [list(plan.maps)]
    ready: set[str] = set()  # ids finished by the waves before the last one
    for step in plan.reduces:
        if not set(step.inputs) <= ready:
            ready |= {s.id for s in waves[-1]}
            waves.append([])
        assert set(step.inputs) <= ready, "a plan's reduces come after their inputs"
        waves[-1].append(step)
    return waves


def _title(step: Step, done: dict[str, StepResult]) -> str:
    if isinstance(step, MapStep):
        return step.title
    titles = [done[i].title for i in step.inputs]
    return titles[0] if len(titles) == 1 else f"{titles[0]} … {titles[-1]}"
