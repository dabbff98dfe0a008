"""Turn a GGUF file into a `ModelConfig` and a Hugging Face-named state dict of dense tensors.

Tensors are dequantized with `gguf.quants.dequantize` (numpy, float32) and handed to torch
without a copy; only a cast to bf16 copies. llama.cpp's converter reorders the rows of the
llama architecture's q/k projections (interleaved rotary pairs); we undo that so the weights
are in Hugging Face layout (rotate-half pairs). Qwen2 files are stored unpermuted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants as gguf_quants

from .config import (
    ARCHS,
    YARN_BETA_FAST,
    YARN_BETA_SLOW,
    ModelConfig,
    ModelConfigError,
    RopeScaling,
)
from .errors import ModelFileError, UnsupportedModelError
from .gguf_file import GGUFFile, TensorInfo
from .progress import ProgressFn, no_progress

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_PERMUTED_ARCHS = ("llama",)
LOAD_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_THREADS = 8
"""Tensors dequantized at once; more rarely helps (memory bandwidth)."""
BATCH_VALUES = 1 << 20
"""Values per `dequantize_rows` call: big enough to amortize Python, small enough for cache."""


def config_from_gguf(gguf: GGUFFile) -> ModelConfig:
    """The architecture hyper-parameters stored in the file's `<arch>.*` metadata."""
    meta = gguf.metadata
    arch = meta.get("general.architecture")
    if arch not in ARCHS:
        raise UnsupportedModelError(
            f"{gguf.path.name}: architecture {arch!r} is not supported (supported: {ARCHS})"
        )

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise ModelFileError(f"{gguf.path.name}: metadata {arch}.{key} is missing")
        return value

    hidden, heads = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden // heads))
    if int(get("rope.dimension_count", head_dim)) != head_dim:
        raise UnsupportedModelError(f"{gguf.path.name}: partial rotary embeddings")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab_size = len(tokens) if tokens is not None else int(get("vocab_size"))
    rope_scaling = _rope_scaling(meta, arch, int(get("context_length")))
    try:
        return ModelConfig(
            arch=arch,
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=int(get("feed_forward_length")),
            num_layers=int(get("block_count")),
            num_heads=heads,
            num_kv_heads=int(get("attention.head_count_kv", heads)),
            head_dim=head_dim,
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            rope_theta=float(get("rope.freq_base", 10_000.0)),
            max_position=(
                rope_scaling.original_max_position if rope_scaling else int(get("context_length"))
            ),
            tie_embeddings="output.weight" not in gguf.tensors,
            qkv_bias="blk.0.attn_q.bias" in gguf.tensors,
            rope_scaling=rope_scaling,
        )
    except ModelConfigError as error:
        raise UnsupportedModelError(f"{gguf.path.name}: {error}") from None


def _rope_scaling(meta: Mapping[str, Any], arch: str, context: int) -> RopeScaling | None:
    """YaRN settings from `<arch>.rope.scaling.*`; no scaling when the type is absent/none."""
    kind = meta.get(f"{arch}.rope.scaling.type", "none")
    if kind == "none":
        return None
    if kind != "yarn":
        raise UnsupportedModelError(f"rope scaling {kind!r} is not supported (supported: yarn)")
    original = int(meta.get(f"{arch}.rope.scaling.original_context_length", context))
    if original <= 0:
        raise ModelFileError(f"{arch}.rope.scaling.original_context_length is {original}")
    factor = float(meta.get(f"{arch}.rope.scaling.factor", context / original))
    try:
        return RopeScaling(
            factor=factor,
            original_max_position=original,
            beta_fast=float(meta.get(f"{arch}.rope.scaling.yarn_beta_fast", YARN_BETA_FAST)),
            beta_slow=float(meta.get(f"{arch}.rope.scaling.yarn_beta_slow", YARN_BETA_SLOW)),
        )
    except ModelConfigError as error:
        raise UnsupportedModelError(str(error)) from None


def hf_name(gguf_name: str) -> str:
    """The Hugging Face state-dict key of a GGUF tensor (`blk.3.attn_q.weight` ->
    `model.layers.3.self_attn.q_proj.weight`)."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _LAYER_TENSOR.fullmatch(gguf_name)
    if match is None or match.group(2) not in _LAYER_NAMES:
        raise UnsupportedModelError(f"unexpected tensor {gguf_name!r} in the GGUF file")
    layer, kind, suffix = match.groups()
    return f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}"


def load_gguf_state_dict(
    gguf: GGUFFile,
    config: ModelConfig,
    dtype: torch.dtype = torch.float32,
    on_progress: ProgressFn | None = None,
) -> dict[str, torch.Tensor]:
    """All tensors of `gguf`, dequantized to `dtype` on the CPU, under Hugging Face names.

    Tensors are dequantized on a few threads at once (numpy releases the GIL in its math)."""
    if dtype not in LOAD_DTYPES:
        raise UnsupportedModelError(f"cannot load weights as {dtype} (supported: {LOAD_DTYPES})")
    report = on_progress or no_progress
    infos = list(gguf.tensors.values())
    names = [hf_name(info.name) for info in infos]  # refuse unknown tensors before any work

    def load(info: TensorInfo) -> torch.Tensor:
        tensor = _dequantize(gguf, info).to(dtype)
        if config.arch in _PERMUTED_ARCHS:
            tensor = _unpermute_if_rotary(info.name, tensor, config)
        return tensor

    state: dict[str, torch.Tensor] = {}
    with ThreadPoolExecutor(min(MAX_THREADS, os.cpu_count() or 1)) as pool:
        for done, (name, tensor) in enumerate(zip(names, pool.map(load, infos), strict=True), 1):
            state[name] = tensor
            report("load weights", done, len(infos))
    return state


def _dequantize(gguf: GGUFFile, info: TensorInfo) -> torch.Tensor:
    """One tensor as float32 [*shape]; shares memory with numpy's result (no copy)."""
    try:
        values = _dequantize_array(gguf.raw(info), info.qtype)
    except NotImplementedError:
        raise UnsupportedModelError(
            f"{gguf.path.name}: tensor {info.name} uses {info.qtype.name}, which cannot be "
            "dequantized"
        ) from None
    # F32/F16 come back as views of the read-only file mapping; torch needs writable memory.
    values = np.require(values, dtype=np.float32, requirements=("C", "W"))
    if values.shape != info.shape:
        raise ModelFileError(f"{gguf.path.name}: tensor {info.name} has a malformed shape")
    return torch.from_numpy(values)


def _dequantize_array(raw: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """`gguf.quants` dequantization of raw [rows, bytes per row] -> float32 [rows, values].

    `gguf.quants.dequantize` works on groups of 16 rows, so its Python overhead dominates
    on large tensors; we hand its per-type `dequantize_rows` about BATCH_VALUES at a time
    (the same arithmetic, ~30% less CPU time)."""
    kind = getattr(gguf_quants, qtype.name, None)
    if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16) or kind is None:
        return gguf_quants.dequantize(raw, qtype)
    kind.init_grid()
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rows = raw.reshape(-1, raw.shape[-1])
    width = rows.shape[1] // type_size * block_size
    out = np.empty((rows.shape[0], width), dtype=np.float32)
    step = max(1, BATCH_VALUES // width)
    for start in range(0, rows.shape[0], step):
        out[start : start + step] = kind.dequantize_rows(rows[start : start + step])
    return out.reshape(*raw.shape[:-1], width)


def _unpermute_if_rotary(name: str, tensor: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    if ".attn_q." in name:
        return unpermute_rotary(tensor, config.num_heads)
    if ".attn_k." in name:
        return unpermute_rotary(tensor, config.num_kv_heads)
    return tensor


def unpermute_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's row order for a q/k projection weight [heads * D, in] or bias [heads * D].

    llama.cpp stores each head's rows as interleaved pairs (0, D/2, 1, D/2+1, ...) for its
    rotary kernel; Hugging Face keeps the halves apart (0..D/2-1, D/2..D-1)."""
    rest = weight.shape[1:]
    head_dim = weight.shape[0] // heads
    return weight.reshape(heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(weight.shape)
