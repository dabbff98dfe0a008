"""Write a small Hugging Face-style model folder with random weights, for plumbing benchmarks.

A 6-layer llama shape (hidden 256, 4/2 heads) in bf16 with SmolLM2's real tokenizer (built by
`load_tokenizer` from the bundled GGUF): it runs the real engine on any device in seconds,
and its answers are noise. `bench/pool_gpus.py` carries it to the GPU machine.
Usage: python bench/make_tiny_model.py OUT_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from nsa_assist.model.source import load_tokenizer

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def main(out: Path, home: Path) -> None:
    tokenizer, _ = load_tokenizer("smollm2-135m-instruct", home=home)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        rope_theta=100000.0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, out / "model.safetensors")
    config.save_pretrained(out)
    shutil.copy(tokenizer.tokenizer_json, out / "tokenizer.json")
    config_json = {"chat_template": CHATML, "eos_token": "<|im_end|>"}
    (out / "tokenizer_config.json").write_text(json.dumps(config_json))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path("~/.cache/nsa-assist").expanduser())
