"""Tiny random qwen2 / llama models: Hugging Face's (the oracle) and ours with its weights."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from nsa_assist.model.config import config_from_hf
from nsa_assist.model.transformer import Transformer

VOCAB = 512

# name -> (HF model class, HF config class, config overrides)
TINY: dict[str, tuple[type, type, dict[str, Any]]] = {
    "qwen2-tied": (Qwen2ForCausalLM, Qwen2Config, {"tie_word_embeddings": True}),
    "qwen2-yarn": (
        Qwen2ForCausalLM,
        Qwen2Config,
        {
            "tie_word_embeddings": False,
            "max_position_embeddings": 256,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
    ),
    "llama": (LlamaForCausalLM, LlamaConfig, {"tie_word_embeddings": False}),
}


def tiny_pair(name: str, seed: int = 0) -> tuple[torch.nn.Module, Transformer]:
    """(HF model, our Transformer) with identical random float32 weights, in eval mode."""
    model_class, config_class, overrides = TINY[name]
    torch.manual_seed(seed)
    hf_config = config_class(
        vocab_size=VOCAB,
        hidden_size=96,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        rope_theta=10000.0,
        **overrides,
    )
    reference = model_class(hf_config).eval()
    with torch.no_grad():  # HF initialises norms to 1 and biases to 0: randomise all
        for param in reference.parameters():
            param.copy_(torch.randn_like(param) * 0.2)
    ours = Transformer(config_from_hf(hf_config.to_dict())).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours
