"""The inference engine: chunked prefill, batched decode, sampling, stop conditions.

`Engine.generate` serves a list of requests together. Up to `max_batch_size` sequences
share each decode step; a request waits until a cache row frees up, then is prefilled in
chunks (logits only for the prompt's last position) and joins the decode batch. Active
sequences always occupy cache rows [0, B): when one finishes, the later rows move down.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from nsa_assist.model.attention import StepBatch
from nsa_assist.model.transformer import Transformer

from .decode import EagerDecoder, GraphDecoder
from .errors import EngineConfigError, RequestError
from .kv_cache import KVCache
from .sampling import SamplingParams, make_generator, sample

TokenCallback = Callable[[str, int], None]  # (request_id, token_id)
PrefillCallback = Callable[[str, int, int], None]  # (request_id, tokens done, prompt tokens)
FinishReason = Literal["stop", "length"]


# Prefill chunk when none is given. On an H200 (1.5B, bf16) one 64k-token chunk took
# 1.00 s and 8k-token chunks 1.51 s, so a GPU takes big chunks; on a CPU, 2048-token
# chunks keep activation memory small (a few hundred MB for the 0.5B in float32).
CPU_PREFILL_CHUNK = 2048
GPU_PREFILL_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """max_seq_len bounds prompt + output per sequence; the KV cache holds
    max_batch_size x max_seq_len positions. prefill_chunk None picks by device (above).
    cuda_graphs is ignored off CUDA. cpu_threads, if set, is applied with
    torch.set_num_threads (process-wide)."""

    max_batch_size: int = 4
    prefill_chunk: int | None = None
    max_seq_len: int = 8192
    cuda_graphs: bool = True
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_seq_len"):
            if getattr(self, name) < 1:
                raise EngineConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prefill_chunk is not None and self.prefill_chunk < 1:
            raise EngineConfigError(f"prefill_chunk must be >= 1, got {self.prefill_chunk}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise EngineConfigError(f"cpu_threads must be >= 1, got {self.cpu_threads}")


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True, slots=True)
class Completion:
    """Generated tokens (stop token excluded) and where the time went: prefill includes
    choosing the first token; decode runs from the request's first decode step to its end
    (0 when the first token already finished it)."""

    request_id: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float


@dataclass(slots=True)
class _Sequence:
    """A request in flight: `cached` tokens are in the KV cache, `last` is not yet."""

    request: Request
    generator: torch.Generator | None
    cached: int
    last: int
    output: list[int]
    prefill_seconds: float
    decode_started: float | None = None  # set by its first decode step
    finish: FinishReason | None = None


@dataclass(slots=True)
class _QueuedStep:
    """A decode step launched on the device whose tokens the host has not read yet."""

    tokens: Tensor  # [B] int64 on the device: the tokens this step chose
    positions: Tensor  # [B] int64 on the device: where this step's input tokens went
    host: Tensor  # [B] int64 on the host (pinned), filled once `ready` fires
    ready: torch.cuda.Event | None  # None: `host` is already filled (CPU)
    generator_states: list[Tensor | None]  # each row's RNG state before this step sampled

    def chosen(self) -> list[int]:
        """The chosen tokens, waiting for this step only (not for any step queued later)."""
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.tolist()

    def rewind_generators(self, active: list[_Sequence]) -> None:
        """Undo this dropped step's draws, so a seeded request samples as if decoded alone."""
        for seq, state in zip(active, self.generator_states, strict=True):
            if seq.generator is not None and state is not None:
                seq.generator.set_state(state)


class Engine:
    """Serves `Request`s on one `Transformer` with a preallocated KV cache."""

    def __init__(self, model: Transformer, config: EngineConfig) -> None:
        if config.cpu_threads is not None:
            torch.set_num_threads(config.cpu_threads)
        param = next(model.parameters())
        self.model = model.eval()
        self.config = config
        self.device, self.dtype = param.device, param.dtype
        default_chunk = GPU_PREFILL_CHUNK if self.device.type == "cuda" else CPU_PREFILL_CHUNK
        self.prefill_chunk = config.prefill_chunk or default_chunk
        model.fuse_projections()
        self.cache = KVCache(
            model.config,
            config.max_batch_size,
            config.max_seq_len,
            self.device,
            self.dtype,
            model.attention,
        )
        use_graphs = config.cuda_graphs and self.device.type == "cuda"
        self.decoder = (
            GraphDecoder(model, self.cache, config.max_batch_size)
            if use_graphs
            else EagerDecoder(model, self.cache)
        )

    @torch.inference_mode()
    def generate(
        self,
        requests: Sequence[Request],
        on_token: TokenCallback | None = None,
        on_prefill_progress: PrefillCallback | None = None,
    ) -> list[Completion]:
        """Run every request to completion; results in the order of `requests`.

        `on_token(request_id, token_id)` fires for each generated token as soon as it is
        chosen (not for stop tokens). `on_prefill_progress` fires after each prefill chunk.
        """
        self._validate(requests)
        pending = deque(requests)
        active: list[_Sequence] = []
        done: dict[str, Completion] = {}
        while pending or active:
            while pending and len(active) < self.config.max_batch_size:
                seq = self._admit(pending.popleft(), len(active), on_prefill_progress)
                self._accept(seq, seq.last, on_token)
                if seq.finish is None:
                    active.append(seq)
                else:
                    done[seq.request.request_id] = self._complete(seq)
            if active:
                self._decode(active, on_token)
                active = self._retire(active, done)
        return [done[r.request_id] for r in requests]

    def _validate(self, requests: Sequence[Request]) -> None:
        ids = [r.request_id for r in requests]
        if len(set(ids)) != len(ids):
            raise RequestError("request ids must be unique")
        limit = self.config.max_seq_len
        vocab = self.model.config.vocab_size
        for r in requests:
            if not r.prompt_ids:
                raise RequestError(f"request {r.request_id!r} has an empty prompt")
            if len(r.prompt_ids) >= limit:
                raise RequestError(
                    f"request {r.request_id!r}: prompt of {len(r.prompt_ids)} tokens leaves "
                    f"no room to generate within max_seq_len={limit}"
                )
            if not all(0 <= t < vocab for t in r.prompt_ids):
                raise RequestError(f"request {r.request_id!r} has token ids outside [0, {vocab})")

    def _admit(self, request: Request, row: int, progress: PrefillCallback | None) -> _Sequence:
        """Prefill `request` into cache row `row` and choose its first token."""
        began = time.perf_counter()
        prompt = torch.tensor(request.prompt_ids, dtype=torch.int64, device=self.device)
        report = None
        if progress is not None:
            report = lambda done, total: progress(request.request_id, done, total)
        logits = prefill(self.model, self.cache, row, prompt, self.prefill_chunk, report)
        generator = make_generator(request.params, self.device)
        first = int(sample(logits.unsqueeze(0), [request.params], [generator])[0])
        elapsed = time.perf_counter() - began
        return _Sequence(request, generator, len(prompt), first, [], elapsed)

    def _accept(self, seq: _Sequence, token: int, on_token: TokenCallback | None) -> None:
        """Record a chosen token and decide whether the sequence is finished."""
        params = seq.request.params
        if token in params.stop_token_ids:
            seq.finish = "stop"
            return
        seq.output.append(token)
        seq.last = token
        if on_token is not None:
            on_token(seq.request.request_id, token)
        if len(seq.output) >= params.max_new_tokens or seq.cached >= self.config.max_seq_len:
            seq.finish = "length"

    def _decode(self, active: list[_Sequence], on_token: TokenCallback | None) -> None:
        """Decode the batch until it changes (a sequence finishes); one step off CUDA.

        On CUDA the host runs one step behind the GPU: step t+1 is queued, fed by step t's
        tokens on the device, before the host reads step t's tokens, so the host's share
        (reading tokens back, streaming, stop checks, the next launch) hides behind the
        GPU's. If a sequence then turns out to have stopped, the queued step is dropped:
        it only wrote cache positions past each sequence's length, and rows move next.
        """
        now = time.perf_counter()
        for seq in active:
            seq.decode_started = seq.decode_started or now
        tokens = torch.tensor([s.last for s in active], dtype=torch.int64, device=self.device)
        positions = torch.tensor([s.cached for s in active], dtype=torch.int64, device=self.device)
        step = self._queue_step(active, tokens, positions, ahead=0)
        while True:
            queued = None
            if self.device.type == "cuda" and not any(self._ends_by_length(s) for s in active):
                queued = self._queue_step(active, step.tokens, step.positions + 1, ahead=1)
            for seq, token in zip(active, step.chosen(), strict=True):
                seq.cached += 1
                self._accept(seq, token, on_token)
            if queued is None or any(s.finish is not None for s in active):
                if queued is not None:
                    queued.rewind_generators(active)
                return
            step = queued

    def _queue_step(
        self, active: list[_Sequence], tokens: Tensor, positions: Tensor, ahead: int
    ) -> _QueuedStep:
        """Launch one decode step and its sampling; the host reads the tokens later.

        tokens, positions [B] on the device; `ahead` steps past what the host has accepted.
        """
        longest = max(s.cached for s in active) + 1 + ahead
        generators = [s.generator for s in active]
        states = [None if g is None or not ahead else g.get_state() for g in generators]
        logits = self.decoder.step(tokens, positions, longest)
        chosen = sample(logits, [s.request.params for s in active], generators)
        if self.device.type != "cuda":
            return _QueuedStep(chosen, positions, chosen, None, states)
        host = torch.empty(chosen.shape, dtype=chosen.dtype, pin_memory=True)
        host.copy_(chosen, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        return _QueuedStep(chosen, positions, host, ready, states)

    def _ends_by_length(self, seq: _Sequence) -> bool:
        """Whether the token now being chosen for `seq` is its last (see `_accept`)."""
        return (
            len(seq.output) + 1 >= seq.request.params.max_new_tokens
            or seq.cached + 1 >= self.config.max_seq_len
        )

    def _retire(self, active: list[_Sequence], done: dict[str, Completion]) -> list[_Sequence]:
        """Complete finished sequences and move the survivors down to rows [0, B')."""
        survivors = []
        for row, seq in enumerate(active):
            if seq.finish is not None:
                done[seq.request.request_id] = self._complete(seq)
                continue
            if row != len(survivors):  # ascending order never overwrites a live row
                self.cache.move_row(row, len(survivors), seq.cached)
            survivors.append(seq)
        return survivors

    @staticmethod
    def _complete(seq: _Sequence) -> Completion:
        assert seq.finish is not None
        return Completion(
            request_id=seq.request.request_id,
            token_ids=seq.output,
            finish_reason=seq.finish,
            prompt_tokens=len(seq.request.prompt_ids),
            prefill_seconds=seq.prefill_seconds,
            decode_seconds=time.perf_counter() - seq.decode_started if seq.decode_started else 0.0,
        )


def prefill(
    model: Transformer,
    cache: KVCache,
    row: int,
    prompt: Tensor,
    chunk: int,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Write prompt [P] into cache row `row` chunk by chunk -> logits [V] of its last token.

    Peak activation memory follows `chunk`, not P: a 64k prompt fits where one 64k-token
    forward would not. Only the final chunk computes logits, and only for one position.
    """
    total = prompt.shape[0]
    logits = None
    for start in range(0, total, chunk):
        end = min(start + chunk, total)
        batch = StepBatch.prefill(row, start, end - start, prompt.device)
        mode = "last" if end == total else "none"
        logits = model(prompt[None, start:end], batch, cache, logits=mode)
        if progress is not None:
            progress(end, total)
    assert logits is not None
    return logits[0]
