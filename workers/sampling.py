"""Token choice from logits: greedy, or temperature + top-p (nucleus) with a seeded RNG.

Each request owns its generator, so a seeded request draws the same tokens whether it
is decoded alone or batched with others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import RequestError


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """temperature 0 is greedy; stop tokens end a request and are not part of its output."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise RequestError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise RequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise RequestError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    """The request's RNG on the logits' device (None for greedy requests)."""
    if params.greedy:
        return None
    generator = torch.Generator(device=device)
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(params.seed)
    return generator


def sample(
    logits: Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
) -> Tensor:
    """logits [B, V] float32 -> token ids [B] int64 on the same device."""
    tokens = logits.argmax(dim=-1)
    for row, (row_params, generator) in enumerate(zip(params, generators, strict=True)):
        if not row_params.greedy:
            tokens[row] = _sample_row(logits[row], row_params, generator)
    return tokens


def _sample_row(
    logits: Tensor, params: SamplingParams, generator: torch.Generator | None
) -> Tensor:
    """logits [V] -> one token id (0-d tensor) from the top-p nucleus at the temperature."""
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p >= 1.0:
        return torch.multinomial(probs, 1, generator=generator)[0]
    sorted_probs, order = probs.sort(descending=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    sorted_probs[mass_before >= params.top_p] = 0.0  # keep the token that crosses top_p
    return order[torch.multinomial(sorted_probs, 1, generator=generator)[0]]
