"""Load a Hugging Face-style model folder: config.json, *.safetensors, tokenizer.json
(+ tokenizer_config.json / chat_template.jinja / generation_config.json).

`download_hub_snapshot` fetches such a folder from the Hugging Face hub with
`huggingface_hub`, when that package is installed. No hub is reachable on our machines, so
that one function is not exercised by the tests; everything it hands over is (a folder).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from .config import ModelConfig, ModelConfigError, config_from_hf
from .errors import ModelFileError, PullError, UnsupportedModelError
from .gguf_tokenizer import END_OF_TURN_TOKENS
from .progress import ProgressFn, no_progress
from .tokenizer import ModelTokenizer, TokenizerSpec

if TYPE_CHECKING:  # torch only for type hints: tokenizer-only callers never import it
    import torch

HUB_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "*.safetensors",
    "*.safetensors.index.json",
)
"""What a folder needs; a hub download fetches only these."""


def is_model_folder(path: Path) -> bool:
    """A folder with a config.json (what the rest of the loading then requires)."""
    return path.is_dir() and (path / "config.json").is_file()


def config_from_folder(folder: Path) -> ModelConfig:
    """The ModelConfig described by `folder/config.json`."""
    try:
        return config_from_hf(_read_json(folder / "config.json"))
    except (ModelConfigError, KeyError, TypeError, ValueError) as error:
        raise UnsupportedModelError(f"{folder}/config.json: {error!r}") from None


def load_folder_state_dict(
    folder: Path, dtype: torch.dtype, on_progress: ProgressFn | None = None
) -> dict[str, torch.Tensor]:
    """Every tensor of `folder/*.safetensors` (shards included), cast to `dtype`, on the CPU."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFileError(f"{folder} has no *.safetensors weights")
    report = on_progress or no_progress
    state: dict[str, torch.Tensor] = {}
    for done, file in enumerate(files, start=1):
        try:
            with safe_open(str(file), framework="pt") as weights:
                for name in weights.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                    state[name] = weights.get_tensor(name).to(dtype)
        except (SafetensorError, OSError) as error:
            raise ModelFileError(f"cannot read {file}: {error}") from None
        report("load weights", done, len(files))
    return state


def tokenizer_from_folder(folder: Path) -> ModelTokenizer:
    """The folder's tokenizer.json with chat template and stop tokens from its configs."""
    tokenizer_json = folder / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise ModelFileError(f"{folder} has no tokenizer.json")
    config = _read_json(folder / "tokenizer_config.json", missing_ok=True)
    generation = _read_json(folder / "generation_config.json", missing_ok=True)
    vocab = _token_ids(tokenizer_json)
    bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
    eos_ids = generation.get("eos_token_id", [])
    stops = {vocab[name] for name in (eos, *END_OF_TURN_TOKENS) if name in vocab}
    stops.update(eos_ids if isinstance(eos_ids, list) else [eos_ids])
    spec = TokenizerSpec(
        chat_template=_chat_template(folder, config),
        bos_token=bos,
        eos_token=eos,
        add_bos=bool(config.get("add_bos_token", False)),
        stop_token_ids=tuple(sorted(int(i) for i in stops)),
    )
    return ModelTokenizer(tokenizer_json, spec)


def _token_ids(tokenizer_json: Path) -> dict[str, int]:
    """Added tokens (where EOS and end-of-turn tokens live) by text."""
    data = _read_json(tokenizer_json)
    return {token["content"]: int(token["id"]) for token in data.get("added_tokens", [])}


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes a token as a string or as {"content": ...}."""
    if isinstance(value, Mapping):
        return value.get("content")
    return value


def _chat_template(folder: Path, config: Mapping[str, Any]) -> str | None:
    """`chat_template.jinja`, else tokenizer_config's `chat_template` (a string, or a list of
    named templates of which we take "default")."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {entry.get("name"): entry.get("template") for entry in template}
        return named.get("default")
    return template


def _read_json(path: Path, missing_ok: bool = False) -> dict[str, Any]:
    if missing_ok and not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelFileError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} is not a JSON object")
    return data


def download_hub_snapshot(repo_id: str, home: Path) -> Path:
    """Fetch `repo_id` (e.g. "Qwen/Qwen2.5-Coder-0.5B-Instruct") from the Hugging Face hub into
    `<home>/hub` and return its folder. Needs `huggingface_hub` and network access to the hub;
    neither is available on our machines, so this path is untested here."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise PullError("loading a hub model needs `pip install huggingface_hub`") from None
    try:
        folder = snapshot_download(
            repo_id, allow_patterns=list(HUB_FILES), cache_dir=str(home / "hub")
        )
    except Exception as error:  # the hub client raises many unrelated error types
        raise PullError(f"cannot download {repo_id} from the Hugging Face hub: {error}") from None
    return Path(folder)
