"""Real bundled models: our loader + Transformer + Engine against transformers reading the
same GGUF (float32): logits over a chat prompt and 32 greedy tokens."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from model_fixtures import oracle_folder, qwen05_gguf, shared_home, smollm2_gguf  # noqa: F401

from nsa_assist.model.loader import load_model
from nsa_assist.workers.engine import Engine, EngineConfig, Request
from nsa_assist.workers.sampling import SamplingParams

pytestmark = pytest.mark.slow  # transformers dequantizes GGUF in numpy: minutes on 2 cores

LOGIT_TOLERANCE = 1e-3  # float32, different op order over 24-30 layers
GREEDY_TOKENS = 32


def chat_prompt(loaded) -> list[int]:
    question = "What does this function do, and what could go wrong?\n\n" + inspect.getsource(
        inspect.cleandoc
    )
    text = loaded.tokenizer.apply_chat([{"role": "user", "content": question}])
    return loaded.tokenizer.encode(text)


@pytest.mark.parametrize("gguf_fixture", ["smollm2_gguf", "qwen05_gguf"])
def test_logits_and_greedy_tokens_match_transformers(
    gguf_fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    gguf: Path = request.getfixturevalue(gguf_fixture)
    loaded = load_model(str(gguf), home=shared_home(), device="cpu", dtype=torch.float32)
    oracle = AutoModelForCausalLM.from_pretrained(
        oracle_folder(gguf, tmp_path), gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    prompt = chat_prompt(loaded)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        expected = oracle(ids).logits
        got = loaded.model(ids)
        reference = oracle.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=GREEDY_TOKENS,
            min_new_tokens=GREEDY_TOKENS,
            do_sample=False,
        )[0, len(prompt) :].tolist()
    assert (got - expected).abs().max().item() < LOGIT_TOLERANCE
    config = EngineConfig(max_batch_size=1, prefill_chunk=64, max_seq_len=len(prompt) + 64)
    params = SamplingParams(max_new_tokens=GREEDY_TOKENS)  # no stop tokens: all 32 compared
    (completion,) = Engine(loaded.model, config).generate([Request("p", prompt, params)])
    assert completion.token_ids == reference
