"""Engine behaviour on a tiny random model: prefill, batching, sampling, stop conditions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from tiny_models import VOCAB, tiny_pair

from nsa_assist.model.attention import DenseAttention, LayerKV, StepBatch
from nsa_assist.model.transformer import Transformer
from nsa_assist.workers.engine import Completion, Engine, EngineConfig, Request, prefill
from nsa_assist.workers.errors import EngineConfigError, RequestError
from nsa_assist.workers.kv_cache import KVCache
from nsa_assist.workers.sampling import SamplingParams

PROMPT_LENGTHS = (7, 61, 23, 40, 1)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny matmuls run ~10x faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> Transformer:
    return tiny_pair("qwen2-tied", seed=3)[1]


def prompts(seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=gen).tolist() for n in PROMPT_LENGTHS]


def run(model: Transformer, requests: list[Request], **config) -> list[Completion]:
    settings = {"max_batch_size": 4, "prefill_chunk": 16, "max_seq_len": 128, **config}
    return Engine(model, EngineConfig(**settings)).generate(requests)


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunked_prefill_matches_one_shot(model: Transformer, chunk: int) -> None:
    prompt = torch.randint(0, VOCAB, (50,))
    with torch.no_grad():
        expected = model(prompt[None])[0, -1]
        cache = KVCache(model.config, 2, 64, prompt.device, torch.float32, model.attention)
        got = prefill(model, cache, 1, prompt, chunk)
    assert (got - expected).abs().max().item() < 1e-4


def test_batched_decode_matches_each_alone(model: Transformer) -> None:
    params = SamplingParams(max_new_tokens=20)
    requests = [Request(f"r{i}", p, params) for i, p in enumerate(prompts())]
    alone = [run(model, [r], max_batch_size=1)[0].token_ids for r in requests]
    # 5 requests through 3 rows: admission while others decode, and row compaction
    batched = run(model, requests, max_batch_size=3)
    assert [c.token_ids for c in batched] == alone
    assert [c.request_id for c in batched] == [r.request_id for r in requests]


def test_seeded_sampling_is_reproducible_and_batch_independent(model: Transformer) -> None:
    def requests(seed: int) -> list[Request]:
        params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=24, seed=seed)
        return [Request(f"r{i}", p, params) for i, p in enumerate(prompts())]

    first = [c.token_ids for c in run(model, requests(7))]
    again = [c.token_ids for c in run(model, requests(7))]
    alone = [run(model, [r], max_batch_size=1)[0].token_ids for r in requests(7)]
    other = [c.token_ids for c in run(model, requests(8))]
    greedy = [c.token_ids for c in run(model, [Request("g", prompts()[1])], max_seq_len=300)]
    assert first == again == alone
    assert first != other
    assert first[1] != greedy[0][:24]


def test_tiny_top_p_is_greedy(model: Transformer) -> None:
    prompt = prompts()[2]
    nucleus = SamplingParams(temperature=2.0, top_p=1e-6, max_new_tokens=16, seed=1)
    (sampled,) = run(model, [Request("s", prompt, nucleus)])
    (greedy,) = run(model, [Request("g", prompt, SamplingParams(max_new_tokens=16))])
    assert sampled.token_ids == greedy.token_ids


def test_stop_tokens_and_max_new_tokens(model: Transformer) -> None:
    prompt = prompts()[3]
    (free,) = run(model, [Request("free", prompt, SamplingParams(max_new_tokens=12))])
    assert free.finish_reason == "length" and len(free.token_ids) == 12
    stop = free.token_ids[5]
    cut = free.token_ids.index(stop)
    params = SamplingParams(max_new_tokens=12, stop_token_ids=(stop,))
    (stopped,) = run(model, [Request("stop", prompt, params)])
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == free.token_ids[:cut]
    assert stopped.prompt_tokens == len(prompt)


def test_cache_capacity_ends_generation(model: Transformer) -> None:
    prompt = prompts()[1]  # 61 tokens
    (done,) = run(model, [Request("r", prompt, SamplingParams(max_new_tokens=100))], max_seq_len=70)
    assert done.finish_reason == "length"
    assert len(prompt) + len(done.token_ids) == 70 + 1  # the last token is never fed back


def test_streaming_callbacks_report_tokens_and_prefill_progress(model: Transformer) -> None:
    requests = [
        Request(f"r{i}", p, SamplingParams(max_new_tokens=9)) for i, p in enumerate(prompts())
    ]
    streamed: dict[str, list[int]] = {}
    progress: list[tuple[str, int, int]] = []
    engine = Engine(model, EngineConfig(max_batch_size=2, prefill_chunk=16, max_seq_len=128))
    results = engine.generate(
        requests,
        on_token=lambda rid, tok: streamed.setdefault(rid, []).append(tok),
        on_prefill_progress=lambda rid, done, total: progress.append((rid, done, total)),
    )
    assert {c.request_id: c.token_ids for c in results} == streamed
    assert [p for p in progress if p[0] == "r1"] == [
        ("r1", 16, 61),
        ("r1", 32, 61),
        ("r1", 48, 61),
        ("r1", 61, 61),
    ]


def test_bad_requests_and_configs_are_user_errors(model: Transformer) -> None:
    engine = Engine(model, EngineConfig(max_batch_size=2, prefill_chunk=8, max_seq_len=32))
    with pytest.raises(RequestError, match="empty"):
        engine.generate([Request("a", [])])
    with pytest.raises(RequestError, match="max_seq_len"):
        engine.generate([Request("a", list(range(32)))])
    with pytest.raises(RequestError, match="outside"):
        engine.generate([Request("a", [VOCAB])])
    with pytest.raises(RequestError, match="unique"):
        engine.generate([Request("a", [1]), Request("a", [2])])
    with pytest.raises(RequestError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(EngineConfigError, match="prefill_chunk"):
        EngineConfig(prefill_chunk=0)


@pytest.mark.gpu
def test_cuda_graph_decode_matches_eager() -> None:
    _, cpu_model = tiny_pair("llama", seed=4)
    model = cpu_model.to("cuda", torch.bfloat16)
    params = SamplingParams(max_new_tokens=40)
    requests = [Request(f"r{i}", p, params) for i, p in enumerate(prompts())]
    graphs = run(model, requests, cuda_graphs=True, max_seq_len=512)
    eager = run(model, requests, cuda_graphs=False, max_seq_len=512)
    assert [c.token_ids for c in graphs] == [c.token_ids for c in eager]


@pytest.mark.gpu
def test_pipelined_decode_drops_the_step_after_a_stop_token() -> None:
    """On CUDA the host runs a step behind: a stop token in one row must neither leak a
    token nor shift the random draws of a seeded row decoded beside it."""
    model = tiny_pair("qwen2-tied", seed=3)[1].to("cuda")
    greedy_prompt, sampled_prompt = prompts()[3], prompts()[1]
    (free,) = run(model, [Request("free", greedy_prompt, SamplingParams(max_new_tokens=12))])
    stop = free.token_ids[5]
    stops = SamplingParams(max_new_tokens=12, stop_token_ids=(stop,))
    seeded = SamplingParams(temperature=1.0, max_new_tokens=20, seed=7)
    alone = run(model, [Request("sampled", sampled_prompt, seeded)])
    together = run(
        model, [Request("stop", greedy_prompt, stops), Request("sampled", sampled_prompt, seeded)]
    )
    assert together[0].finish_reason == "stop"
    assert together[0].token_ids == free.token_ids[: free.token_ids.index(stop)]
    assert together[1].token_ids == alone[0].token_ids


@pytest.mark.gpu
def test_cuda_decode_kernels_match_masked_sdpa() -> None:
    """The CUDA decode paths (our split-KV Triton kernel; FlashAttention varlen) against the
    portable masked-SDPA path in float32."""
    _, model = tiny_pair("qwen2-tied")
    config = model.config
    lengths = torch.tensor([5, 300, 77, 1], device="cuda")
    triton, torch_only = DenseAttention(config), DenseAttention(config, triton=False)
    cache = KVCache(config, 4, 512, torch.device("cuda"), torch.bfloat16, triton)
    for k, v in zip(cache.k, cache.v, strict=True):
        k.normal_()
        v.normal_()
    batch = triton.prepare(StepBatch.decode(lengths - 1, extent=320))
    q = torch.randn(4, 1, config.num_heads, config.head_dim, device="cuda", dtype=torch.bfloat16)
    kv = cache.layer(0, batch.rows, batch.extent)
    masked = torch_only.forward(q.float(), _as_float(kv), batch, 0)  # float32: no flash
    for backend in (triton, torch_only):  # bf16: Triton kernel, then flash
        out = backend.forward(q, kv, batch, 0)
        assert (out.float() - masked).norm() / masked.norm() < 1e-2


def _as_float(kv: LayerKV) -> LayerKV:
    return LayerKV(kv.k_all.float(), kv.v_all.float(), kv.rows, kv.extent, kv.state)


@pytest.mark.gpu
def test_flash_chunked_prefill_matches_float32_forward() -> None:
    """CUDA bf16 prefill in chunks (flash SDPA, bottom-right causal) vs fp32 in one piece."""
    _, model = tiny_pair("qwen2-tied", seed=6)
    model = model.to("cuda")
    prompt = torch.randint(0, VOCAB, (300,), device="cuda")
    with torch.no_grad():
        expected = model(prompt[None])[0, -1]
        half = model.to(torch.bfloat16)
        cache = KVCache(half.config, 2, 320, prompt.device, torch.bfloat16, half.attention)
        got = prefill(half, cache, 1, prompt, 64)
    assert (got - expected).norm() / expected.norm() < 2e-2
