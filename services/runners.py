"""Which `JobRunner` a worker hosts, chosen by model reference.

`test-echo` selects the deterministic `EchoRunner` stand-in (no model; for tests, the
queue benchmark and checking a deployment's plumbing). Anything else is a model reference
for the real engine (`EngineRunner`), loaded inside each actor.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from nsa_assist.workers.echo import EchoRunner
from nsa_assist.workers.runner import RunnerFactory

from .engine_runner import EngineRunner, EngineRunnerConfig

if TYPE_CHECKING:
    from nsa_assist.model.tokenizer import ModelTokenizer

ECHO_MODEL = "test-echo"


def runner_factory(
    model: str, home: Path, device: str, max_batch: int, max_seq_len: int
) -> RunnerFactory:
    """A picklable factory the actor calls in its own process."""
    if model == ECHO_MODEL:
        return functools.partial(EchoRunner, max_batch=max_batch)
    config = EngineRunnerConfig(model, home, device, max_batch, max_seq_len)
    return functools.partial(EngineRunner, config)


def count_words(text: str) -> int:
    """The echo stand-in's notion of a token (it has no tokenizer)."""
    return len(text.split())


def load_tokenizer(model: str, home: Path) -> ModelTokenizer:
    """The model's tokenizer alone (no weights loaded), to pack contexts at submit time."""
    from nsa_assist.model.source import load_tokenizer as load_model_tokenizer

    return load_model_tokenizer(model, home=home)[0]
