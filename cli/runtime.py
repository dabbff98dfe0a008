"""Which model and device a command runs on, and loading it with progress on stderr."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from .devices import cuda_available
from .progress import stage_progress
from .settings import Settings

if TYPE_CHECKING:
    from nsa_assist.model.loader import LoadedModel


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """A model reference (registry name, .gguf path or folder) and where it runs."""

    ref: str
    device: str
    explicit: bool


def choose_model(ref: str | None) -> ModelChoice:
    """The user's `--model`, else this machine's default (the 1.5B on a GPU, the 0.5B on CPU)."""
    from nsa_assist.model.registry import default_model_name

    device = "cuda" if cuda_available() else "cpu"
    if ref:
        return ModelChoice(ref, device, explicit=True)
    return ModelChoice(default_model_name(device == "cuda"), device, explicit=False)


def announce_first_use(ref: str, home: Path, err: Console) -> None:
    """Say so before a bundled model is fetched (hundreds of MB on first use)."""
    from nsa_assist.model.pull import is_present
    from nsa_assist.model.registry import REGISTRY

    spec = REGISTRY.get(ref)
    if spec is not None and not is_present(spec, home):
        err.print(
            f"[bold]first use:[/] fetching {spec.name} ({spec.size / 1e6:,.0f} MB) into {home}"
        )


def load_with_progress(choice: ModelChoice, settings: Settings, err: Console) -> LoadedModel:
    """Load (pulling a bundled model on first use, and saying so) with bars on stderr."""
    from nsa_assist.model.loader import load_model

    announce_first_use(choice.ref, settings.home, err)
    with stage_progress(err) as on_progress:
        return load_model(
            choice.ref, home=settings.home, device=choice.device, progress=on_progress
        )
