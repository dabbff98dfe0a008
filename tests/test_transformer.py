"""Our Transformer against Hugging Face's implementation on tiny random models (float32)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from tiny_models import TINY, VOCAB, tiny_pair

from nsa_assist.model.attention import DenseAttention, LayerKV, StepBatch
from nsa_assist.model.config import ModelConfig, ModelConfigError, RopeScaling, config_from_hf
from nsa_assist.model.rope import inverse_frequencies
from nsa_assist.model.transformer import Transformer
from nsa_assist.workers.engine import Engine, EngineConfig, Request
from nsa_assist.workers.sampling import SamplingParams

LOGIT_TOLERANCE = 1e-4
GREEDY_TOKENS = 32


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny matmuls run ~10x faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_logits_match_hf(name: str, fused: bool) -> None:
    reference, ours = tiny_pair(name)
    if fused:
        ours.fuse_projections()
    ids = torch.randint(0, VOCAB, (2, 150))  # past the YaRN model's original 64 positions
    with torch.no_grad():
        expected = reference(ids).logits
        got = ours(ids)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < LOGIT_TOLERANCE


@pytest.mark.parametrize("name", sorted(TINY))
def test_greedy_tokens_match_hf(name: str) -> None:
    reference, ours = tiny_pair(name, seed=1)
    prompt = torch.randint(0, VOCAB, (1, 90))
    with torch.no_grad():
        expected = reference.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=GREEDY_TOKENS,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0, prompt.shape[1] :].tolist()
    engine = Engine(ours, EngineConfig(max_batch_size=1, prefill_chunk=32, max_seq_len=256))
    params = SamplingParams(max_new_tokens=GREEDY_TOKENS)
    (completion,) = engine.generate([Request("r", prompt[0].tolist(), params)])
    assert completion.token_ids == expected


def test_yarn_keeps_fast_pairs_and_slows_slow_ones() -> None:
    """YaRN must matter here, else the YaRN parity case proves nothing."""
    _, ours = tiny_pair("qwen2-yarn")
    plain = replace(ours.config, rope_scaling=None)
    scaled_freq, mscale = inverse_frequencies(ours.config)
    plain_freq, _ = inverse_frequencies(plain)
    assert mscale > 1.0
    assert torch.equal(scaled_freq[:1], plain_freq[:1])
    assert torch.allclose(scaled_freq[-1], plain_freq[-1] / 4.0)


def test_tied_model_loads_without_lm_head() -> None:
    reference, _ = tiny_pair("qwen2-tied")
    state = {k: v for k, v in reference.state_dict().items() if k != "lm_head.weight"}
    ours = Transformer(config_from_hf(reference.config.to_dict()))
    ours.load_state_dict(state, strict=True)
    assert ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()


def test_fused_projections_follow_replaced_weights() -> None:
    """After fusing, replacing parameters (assign=True) must not leave stale fused weights."""
    _, ours = tiny_pair("llama")
    ours.fuse_projections()
    other, _ = tiny_pair("llama", seed=5)
    ours.load_state_dict(other.state_dict(), assign=True)
    ids = torch.randint(0, VOCAB, (1, 20))
    with torch.no_grad():
        assert (ours(ids) - other(ids).logits).abs().max().item() < LOGIT_TOLERANCE


class RecordingBackend(DenseAttention):
    """A stand-in for NSA: per-layer state in the cache, sees every call, defers to dense."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple[int, tuple[int, ...], int | None]] = []
        self.moves: list[tuple[int, int, int]] = []

    def new_layer_state(self, layer, rows, max_seq_len, device, dtype):  # type: ignore[override]
        return {"layer": layer, "rows": rows}

    def copy_row(self, state, src, dst, length):  # type: ignore[override]
        self.moves.append((state["layer"], src, dst))

    def forward(self, q, kv: LayerKV, batch: StepBatch, layer: int):  # type: ignore[override]
        assert kv.state["layer"] == layer
        assert kv.keys().shape[:2] == (q.shape[0], batch.extent)
        self.calls.append((layer, tuple(q.shape), batch.start))
        return super().forward(q, kv, batch, layer)


def test_attention_backend_plugs_in_without_model_changes() -> None:
    _, ours = tiny_pair("qwen2-tied")
    backend = RecordingBackend(ours.config)
    ours.set_attention(backend)
    engine = Engine(ours, EngineConfig(max_batch_size=2, prefill_chunk=16, max_seq_len=128))
    requests = [
        Request("short", torch.randint(0, VOCAB, (10,)).tolist(), SamplingParams(max_new_tokens=3)),
        Request("long", torch.randint(0, VOCAB, (40,)).tolist(), SamplingParams(max_new_tokens=6)),
    ]
    engine.generate(requests)
    layers = ours.config.num_layers
    prefill_calls = [c for c in backend.calls if c[2] is not None]
    decode_calls = [c for c in backend.calls if c[2] is None]
    assert len(prefill_calls) == layers * (1 + 3)  # 10 tokens: 1 chunk; 40 tokens: 3 chunks
    assert {c[0] for c in decode_calls} == set(range(layers))
    assert all(c[1][1:] == (1, 6, 16) for c in decode_calls)  # q [B, 1, H, D]
    # "short" finishes first; "long" moves from row 1 to row 0, state included
    assert backend.moves == [(layer, 1, 0) for layer in range(layers)]


def test_config_rejects_inconsistent_shapes() -> None:
    reference, _ = tiny_pair("llama")
    good = config_from_hf(reference.config.to_dict())
    with pytest.raises(ModelConfigError, match="multiple"):
        replace(good, num_kv_heads=4)
    with pytest.raises(ModelConfigError, match="architecture"):
        replace(good, arch="gpt2")
    with pytest.raises(ModelConfigError, match="factor"):
        RopeScaling(factor=0.5, original_max_position=64)


def test_with_context_turns_on_yarn_past_trained_length() -> None:
    reference, _ = tiny_pair("llama")
    config = config_from_hf(reference.config.to_dict())
    assert config.with_context(config.max_position) is config
    longer = config.with_context(3 * config.max_position)
    assert longer.rope_scaling == RopeScaling(4.0, config.max_position)
    assert longer.context_length == 4 * config.max_position


def test_extend_context_matches_hf_yarn_model() -> None:
    reference, ours = tiny_pair("llama")
    trained = ours.config.max_position
    ours.extend_context(3 * trained)  # -> YaRN, factor 4
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": trained}
    hf_config = reference.config.to_dict() | {
        "rope_scaling": yarn,
        "rope_parameters": None,  # transformers 5 reads this first; make it take rope_scaling
        "max_position_embeddings": 4 * trained,
    }
    stretched = type(reference)(type(reference.config)(**hf_config)).eval()
    stretched.load_state_dict(reference.state_dict())
    ids = torch.randint(0, VOCAB, (1, 40))
    with torch.no_grad():
        assert (ours(ids) - stretched(ids).logits).abs().max().item() < LOGIT_TOLERANCE
        assert (ours(ids) - reference(ids).logits).abs().max().item() > 100 * LOGIT_TOLERANCE


KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: Triton's interpreter


def _use_triton(model: Transformer) -> Transformer:
    """Force the fused Triton kernels (run by Triton's interpreter on the CPU)."""
    model.to(KERNEL_DEVICE).fuse_projections()
    model.triton_kernels = True
    model.set_attention(DenseAttention(model.config, triton=True))
    return model


@pytest.mark.parametrize("name", ["qwen2-tied", "llama"])
def test_triton_kernels_path_matches_hf_logits(name: str) -> None:
    """Prefill through the fused norm and SwiGLU kernels equals HF's model."""
    reference, ours = tiny_pair(name)
    ids = torch.randint(0, VOCAB, (2, 40))
    with torch.no_grad():
        expected = reference(ids).logits
        got = _use_triton(ours)(ids.to(KERNEL_DEVICE)).cpu()
    assert (got - expected).abs().max().item() < LOGIT_TOLERANCE


def test_triton_kernels_decode_batch_matches_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode through RoPE + cache-write and split-KV attention kernels, two rows of
    different lengths (one finishes first, the other moves rows): same tokens as eager."""
    import nsa_assist.model.attention as attention_module
    import nsa_assist.model.transformer as transformer_module

    calls: list[str] = []
    for module, name in ((transformer_module, "rope_store"), (attention_module, "gqa_decode")):
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, k=kernel, n=name: calls.append(n) or k(*a))
    prompts = [torch.randint(0, VOCAB, (n,)).tolist() for n in (70, 9)]
    completions = []
    for triton in (False, True):
        _, ours = tiny_pair("qwen2-yarn", seed=2)
        if triton:
            _use_triton(ours)
        engine = Engine(ours, EngineConfig(max_batch_size=2, prefill_chunk=32, max_seq_len=256))
        requests = [
            Request("long", prompts[0], SamplingParams(max_new_tokens=12)),
            Request("short", prompts[1], SamplingParams(max_new_tokens=4)),
        ]
        completions.append([c.token_ids for c in engine.generate(requests)])
    assert completions[0] == completions[1]
    assert [len(tokens) for tokens in completions[1]] == [12, 4]
    assert calls.count("rope_store") == calls.count("gqa_decode") > 0
    if KERNEL_DEVICE == "cpu":  # on CUDA the calls happen at graph capture, then replays
        layers = tiny_pair("qwen2-yarn")[1].config.num_layers
        assert calls.count("gqa_decode") == layers * 11  # 11 decode steps
