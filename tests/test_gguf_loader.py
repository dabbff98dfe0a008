"""GGUF reading and loading: our reader against the `gguf` package's, GGUF files written here
from tiny random Hugging Face models (names, quant types, llama's q/k permutation), and the
real SmolLM2 file against transformers' own GGUF loading."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize
from model_fixtures import oracle_folder, smollm2_gguf  # noqa: F401 (fixture)
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from nsa_assist.model.errors import ModelFileError, UnsupportedModelError
from nsa_assist.model.gguf_file import GGUFFile
from nsa_assist.model.gguf_loader import config_from_gguf, hf_name, load_gguf_state_dict

HIDDEN, FFN, HEADS, KV_HEADS, LAYERS, VOCAB = 64, 256, 4, 2, 2, 96

# Hugging Face name -> llama.cpp name, written out independently of the loader's table.
LAYER_GGUF = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# A spread of storage types over layer 0 (the K-quants need rows of 256).
QTYPES = {
    "model.embed_tokens.weight": Q.F16,
    "model.layers.0.self_attn.q_proj.weight": Q.Q8_0,
    "model.layers.0.self_attn.k_proj.weight": Q.Q4_1,
    "model.layers.0.self_attn.v_proj.weight": Q.Q5_0,
    "model.layers.0.self_attn.o_proj.weight": Q.BF16,
    "model.layers.0.mlp.down_proj.weight": Q.Q4_K,
    "model.layers.1.mlp.down_proj.weight": Q.Q6_K,
}

# Byte offsets of the float16 scale fields inside one block of a K-quant.
F16_SCALE_OFFSETS = {Q.Q4_K: (0, 2), Q.Q6_K: (208,)}
SCALE = np.float16(0.01).tobytes()


def gguf_name(name: str) -> str:
    if name in GLOBAL_GGUF:
        return GLOBAL_GGUF[name]
    _, _, layer, rest = name.split(".", 3)
    return f"blk.{layer}.{LAYER_GGUF[rest]}"


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's converter does to llama q/k rows (its `permute`)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def tiny_hf(arch: str, tied: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
    )
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    return LlamaForCausalLM(LlamaConfig(**common))


def write_gguf(
    path: Path,
    arch: str,
    state: dict[str, torch.Tensor],
    extra: dict[str, str | int | float] | None = None,
) -> dict[str, np.ndarray]:
    """Write `state` as llama.cpp would; return what each tensor must load back as."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in {
        "context_length": 128,
        "embedding_length": HIDDEN,
        "block_count": LAYERS,
        "feed_forward_length": FFN,
        "attention.head_count": HEADS,
        "attention.head_count_kv": KV_HEADS,
    }.items():
        writer.add_uint32(f"{arch}.{key}", value)
    writer.add_float32(f"{arch}.rope.freq_base", 50_000.0)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    for key, value in (extra or {}).items():
        if isinstance(value, str):
            writer.add_string(f"{arch}.{key}", value)
        elif isinstance(value, int):
            writer.add_uint32(f"{arch}.{key}", value)
        else:
            writer.add_float32(f"{arch}.{key}", value)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(VOCAB)])
    expected = {}
    rng = np.random.default_rng(0)
    for name, tensor in state.items():
        values = tensor.detach().float().numpy()
        if arch == "llama" and ".q_proj." in name:
            stored = llama_cpp_permute(values, HEADS)
        elif arch == "llama" and ".k_proj." in name:
            stored = llama_cpp_permute(values, KV_HEADS)
        else:
            stored = values
        qtype = QTYPES.get(name, Q.F32)
        if qtype in (Q.Q4_K, Q.Q6_K):  # gguf-py cannot quantize these: store random blocks
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            shape = (values.shape[0], values.shape[1] // block * size)
            raw = rng.integers(0, 256, shape, dtype=np.uint8)
            blocks = raw.reshape(shape[0], -1, size)
            for offset in F16_SCALE_OFFSETS[qtype]:  # finite scales, so no NaN weights
                blocks[..., offset : offset + 2] = np.frombuffer(SCALE, np.uint8)
            writer.add_tensor(gguf_name(name), raw, raw_dtype=qtype)
            expected[name] = dequantize(raw, qtype)
            continue
        if qtype == Q.F16:
            writer.add_tensor(gguf_name(name), stored.astype(np.float16))
        elif qtype == Q.F32:
            writer.add_tensor(gguf_name(name), stored)
        else:
            writer.add_tensor(gguf_name(name), quantize(stored, qtype), raw_dtype=qtype)
        expected[name] = dequantize(quantize(values, qtype), qtype) if qtype != Q.F32 else values
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


@pytest.mark.parametrize(
    ("arch", "tied"), [("qwen2", False), ("llama", True), ("llama", False)], ids=str
)
def test_tiny_model_loads_back_in_hf_layout(tmp_path: Path, arch: str, tied: bool) -> None:
    hf = tiny_hf(arch, tied)
    state = {k: v for k, v in hf.state_dict().items() if not (tied and k == "lm_head.weight")}
    expected = write_gguf(tmp_path / "tiny.gguf", arch, state)

    file = GGUFFile(tmp_path / "tiny.gguf")
    config = config_from_gguf(file)
    loaded = load_gguf_state_dict(file, config)

    assert (config.arch, config.tie_embeddings, config.qkv_bias) == (arch, tied, arch == "qwen2")
    assert (config.num_layers, config.num_heads, config.num_kv_heads) == (LAYERS, HEADS, KV_HEADS)
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (HIDDEN, FFN, VOCAB)
    assert (config.head_dim, config.max_position, config.rope_theta) == (16, 128, 50_000.0)
    assert config.rms_norm_eps == pytest.approx(1e-5) and config.rope_scaling is None
    assert set(loaded) == set(state)
    for name, want in expected.items():
        assert loaded[name].dtype == torch.float32
        np.testing.assert_array_equal(loaded[name].numpy(), want, err_msg=name)


def test_bf16_loading_is_the_float32_weights_rounded(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf", "qwen2", tiny_hf("qwen2", False).state_dict())
    file = GGUFFile(tmp_path / "tiny.gguf")
    config = config_from_gguf(file)
    full = load_gguf_state_dict(file, config, torch.float32)
    half = load_gguf_state_dict(file, config, torch.bfloat16)
    for name, tensor in half.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, full[name].to(torch.bfloat16)), name


def test_yarn_rope_scaling_from_metadata(tmp_path: Path) -> None:
    extra = {
        "rope.scaling.type": "yarn",
        "rope.scaling.factor": 4.0,
        "rope.scaling.original_context_length": 32,
        "rope.scaling.yarn_beta_fast": 16.0,
    }
    write_gguf(tmp_path / "yarn.gguf", "qwen2", tiny_hf("qwen2", False).state_dict(), extra)
    config = config_from_gguf(GGUFFile(tmp_path / "yarn.gguf"))
    scaling = config.rope_scaling
    assert scaling is not None
    assert (scaling.factor, scaling.original_max_position) == (4.0, 32)
    assert (scaling.beta_fast, scaling.beta_slow) == (16.0, 1.0)
    assert config.max_position == 32 and config.context_length == 128


def test_unsupported_rope_scaling_is_refused(tmp_path: Path) -> None:
    extra = {"rope.scaling.type": "linear", "rope.scaling.factor": 2.0}
    write_gguf(tmp_path / "lin.gguf", "llama", tiny_hf("llama", False).state_dict(), extra)
    with pytest.raises(UnsupportedModelError, match="linear"):
        config_from_gguf(GGUFFile(tmp_path / "lin.gguf"))


def test_reader_agrees_with_the_gguf_package(tmp_path: Path) -> None:
    path = tmp_path / "kinds.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -100)
    writer.add_uint16("t.u16", 60_000)
    writer.add_int16("t.i16", -30_000)
    writer.add_int32("t.i32", -(2**31))
    writer.add_uint64("t.u64", 2**63 + 5)
    writer.add_int64("t.i64", -(2**62))
    writer.add_float64("t.f64", 1 / 3)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "naïve 日本 🚀")
    writer.add_array("t.ints", [3, 1, 4, 1, 5])
    writer.add_array("t.floats", [0.5, -2.25])
    writer.add_array("t.strs", ["a", "", "ünï"])
    writer.add_tensor("a.weight", np.arange(96, dtype=np.float32).reshape(3, 32))
    writer.add_tensor("b.weight", quantize(np.ones((2, 64), np.float32), Q.Q8_0), raw_dtype=Q.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    ours, theirs = GGUFFile(path), gguf.GGUFReader(path)
    for key, field in theirs.fields.items():
        if key.startswith("GGUF."):
            continue
        want, got = field.contents(), ours.metadata[key]
        if isinstance(want, list) and not isinstance(got, list):
            got = got.tolist()
        assert got == pytest.approx(want) if isinstance(want, float) else got == want, key
    assert set(ours.metadata) == {k for k in theirs.fields if not k.startswith("GGUF.")}
    for tensor in theirs.tensors:
        info = ours.tensors[tensor.name]
        assert info.qtype == tensor.tensor_type
        assert ours.raw(info).tobytes() == np.asarray(tensor.data).tobytes()
    assert ours.tensors["a.weight"].shape == (3, 32)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(ModelFileError, match="not a valid GGUF"):
        GGUFFile(path)


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    write_gguf(tmp_path / "whole.gguf", "qwen2", tiny_hf("qwen2", False).state_dict())
    data = (tmp_path / "whole.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFileError, match="truncated"):
        GGUFFile(tmp_path / "cut.gguf")


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gemma.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match="'gemma' is not supported"):
        config_from_gguf(GGUFFile(path))


def test_unknown_tensor_names_are_refused() -> None:
    assert hf_name("blk.7.ffn_up.weight") == "model.layers.7.mlp.up_proj.weight"
    with pytest.raises(UnsupportedModelError, match="rope_freqs"):
        hf_name("rope_freqs.weight")


def test_smollm2_config(smollm2_gguf: Path) -> None:  # noqa: F811 (fixture)
    config = config_from_gguf(GGUFFile(smollm2_gguf))
    assert config.arch == "llama"
    assert (config.num_layers, config.hidden_size, config.intermediate_size) == (30, 576, 1536)
    assert (config.num_heads, config.num_kv_heads, config.head_dim) == (9, 3, 64)
    assert (config.vocab_size, config.max_position, config.rope_theta) == (49152, 8192, 1e5)
    assert config.tie_embeddings and not config.qkv_bias


@pytest.mark.slow  # transformers' own GGUF loading takes ~20-60 s here
def test_smollm2_weights_equal_transformers_gguf_loading(
    smollm2_gguf: Path,  # noqa: F811 (fixture)
    tmp_path: Path,
) -> None:
    file = GGUFFile(smollm2_gguf)
    ours = load_gguf_state_dict(file, config_from_gguf(file))
    from transformers import AutoModelForCausalLM

    oracle = AutoModelForCausalLM.from_pretrained(
        oracle_folder(smollm2_gguf, tmp_path), gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).state_dict()
    assert set(oracle) - set(ours) == {"lm_head.weight"}  # tied: GGUF has no output tensor
    for name, tensor in ours.items():
        assert torch.equal(tensor, oracle[name]), name
