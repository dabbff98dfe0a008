"""The real `JobRunner`: the engine on a loaded model, hosted by one Ray actor.

Contexts arrive packed (at submit, with the model's tokenizer); this runner frames them
as chat messages, tokenizes, and decodes the batch together, streaming text per job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nsa_assist.ingest.prompt import build_messages
from nsa_assist.workers.runner import RunSink, Task, TaskResult

from .errors import ServiceError
from .submit import SUMMARY_QUESTION

if TYPE_CHECKING:
    from nsa_assist.model.tokenizer import ModelTokenizer
    from nsa_assist.workers.engine import Request


@dataclass(frozen=True, slots=True)
class EngineRunnerConfig:
    """Model reference, where it runs, and the engine's batch and sequence limits."""

    model: str
    home: Path
    device: str
    max_batch: int
    max_seq_len: int

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_seq_len < 1:
            raise ServiceError("max_batch and max_seq_len must be >= 1")


def job_messages(task: Task) -> list[dict[str, str]]:
    """The chat for one job; the same framing `nsa ask` uses for its packed context."""
    return build_messages(task.context, task.question or SUMMARY_QUESTION)


class EngineRunner:
    """Loads the model once (in the actor's process) and runs batches of jobs on it."""

    def __init__(self, config: EngineRunnerConfig) -> None:
        from nsa_assist.model.loader import load_model
        from nsa_assist.workers.engine import Engine, EngineConfig

        self.config = config
        self.max_batch = config.max_batch
        self.loaded = load_model(config.model, home=config.home, device=config.device)
        self.loaded.model.extend_context(config.max_seq_len)  # YaRN past the trained context
        engine_config = EngineConfig(
            max_batch_size=config.max_batch, max_seq_len=config.max_seq_len
        )
        self.engine = Engine(self.loaded.model, engine_config)

    def run(self, tasks: Sequence[Task], sink: RunSink) -> list[TaskResult]:
        from nsa_assist.workers.engine import Request
        from nsa_assist.workers.sampling import SamplingParams

        tokenizer = self.loaded.tokenizer
        started = time.perf_counter()
        results: dict[str, TaskResult] = {}
        requests: list[Request] = []
        for task in tasks:
            ids = tokenizer.encode(tokenizer.apply_chat(job_messages(task)))
            if len(ids) + task.max_new_tokens > self.config.max_seq_len:
                results[task.job_id] = TaskResult(
                    task.job_id,
                    finish_reason="error",
                    error=(
                        f"prompt of {len(ids)} tokens + {task.max_new_tokens} new is over this "
                        f"worker's max_seq_len of {self.config.max_seq_len}"
                    ),
                )
                continue
            params = SamplingParams(
                max_new_tokens=task.max_new_tokens, stop_token_ids=tokenizer.stop_token_ids
            )
            requests.append(Request(task.job_id, ids, params))
        streams = _TextStreams(tokenizer, sink, {r.request_id: r for r in requests})
        if requests:
            completions = self.engine.generate(
                requests, on_token=streams.on_token, on_prefill_progress=streams.on_prefill
            )
            for completion in completions:
                results[completion.request_id] = TaskResult(
                    job_id=completion.request_id,
                    text=tokenizer.decode(completion.token_ids),
                    finish_reason=completion.finish_reason,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=len(completion.token_ids),
                    seconds=time.perf_counter() - started,
                )
        sink.flush()
        return [results[task.job_id] for task in tasks]


class _TextStreams:
    """Per-job stream decoders: turn token ids into text events and progress."""

    def __init__(
        self, tokenizer: ModelTokenizer, sink: RunSink, requests: dict[str, Request]
    ) -> None:
        self._sink = sink
        self._requests = requests
        self._decoders = {rid: tokenizer.stream_decoder() for rid in requests}
        self._generated = dict.fromkeys(requests, 0)

    def _total(self, request_id: str) -> int:
        request = self._requests[request_id]
        return len(request.prompt_ids) + request.params.max_new_tokens

    def on_prefill(self, request_id: str, done: int, _prompt: int) -> None:
        self._sink.progress(request_id, done, self._total(request_id))

    def on_token(self, request_id: str, token_id: int) -> None:
        if self._sink.cancelled(request_id):
            return  # the engine decodes the batch together; a cancelled job's text is dropped
        piece = self._decoders[request_id].push(token_id)
        if piece:
            self._sink.token(request_id, piece)
        self._generated[request_id] += 1
        prompt = len(self._requests[request_id].prompt_ids)
        self._sink.progress(
            request_id, prompt + self._generated[request_id], self._total(request_id)
        )
