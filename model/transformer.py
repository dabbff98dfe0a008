"""Decoder-only transformer for the qwen2 and llama architectures.

Module and parameter names are exactly Hugging Face's (`model.layers.0.self_attn.q_proj.weight`,
..., `lm_head.weight`), so HF state dicts load by name. Attention itself is delegated to an
`AttentionBackend` (dense SDPA by default), which keeps the model unchanged when NSA plugs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nsa_assist.kernels.dense import rope_store, rope_store_supported

from .attention import AttentionBackend, DenseAttention, KVStore, LayerKV, StepBatch
from .config import ModelConfig
from .layers import MLP, FusedLinear, RMSNorm, fuse_linears, linear
from .rope import apply_rope, inverse_frequencies, rope_cos_sin

Logits = Literal["all", "last", "none"]


@dataclass(frozen=True, slots=True)
class Step:
    """What every layer of one forward step shares."""

    rope: tuple[Tensor, Tensor]  # cos, signed sin [B, T, 1, D]
    batch: StepBatch
    backend: AttentionBackend
    triton: bool  # run the fused Triton kernels (CUDA; tests force them in the interpreter)
    gemv: bool  # single-row projections (batch-1 decode) by the Triton GEMV kernel


class SelfAttention(nn.Module):
    """GQA projections + RoPE + cache write; the attention math is the backend's."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.heads, self.kv_heads, self.head_dim = (
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
        )
        hidden, bias = config.hidden_size, config.qkv_bias
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)
        self.fused: FusedLinear | None = None

    def fuse(self) -> None:
        """Run q, k, v as one matmul (parameters keep their names); idempotent."""
        if self.fused is None or not self.fused.is_current():
            self.fused = fuse_linears([self.q_proj, self.k_proj, self.v_proj])

    def _qkv(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, T, C] -> q [B, T, H, D], k and v [B, T, H_kv, D], RoPE applied to q and k."""
        size, length, _ = x.shape
        if self.fused is not None and self.fused.is_current():
            qkv = self.fused(x).view(size, length, self.heads + 2 * self.kv_heads, self.head_dim)
            qk = apply_rope(qkv[:, :, : self.heads + self.kv_heads], *rope)  # one op for both
            q, k = qk.split((self.heads, self.kv_heads), dim=2)
            return q, k, qkv[:, :, self.heads + self.kv_heads :]
        q = self.q_proj(x).view(size, length, self.heads, self.head_dim)
        k = self.k_proj(x).view(size, length, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(size, length, self.kv_heads, self.head_dim)
        return apply_rope(q, *rope), apply_rope(k, *rope), v

    def forward(self, x: Tensor, kv: LayerKV, step: Step) -> Tensor:
        """x [B, T, C] -> [B, T, C]."""
        if step.triton and step.batch.start is None and self._fused_decode_ready():
            q = self._decode_qkv(x, kv, step)
        else:
            q, k, v = self._qkv(x, step.rope)
            kv.write(k, v, step.batch)
        out = step.backend.forward(q, kv, step.batch, self.layer)  # [B, T, H, D]
        return linear(out.flatten(2), self.o_proj.weight, None, step.gemv)

    def _fused_decode_ready(self) -> bool:
        return (
            self.fused is not None
            and self.fused.is_current()
            and rope_store_supported(self.head_dim)
        )

    def _decode_qkv(self, x: Tensor, kv: LayerKV, step: Step) -> Tensor:
        """Decode (one token per row): projection, then one kernel rotates q and k and
        writes k, v into the cache. x [B, 1, C] -> q [B, 1, H, D]."""
        assert self.fused is not None and step.batch.row_ids is not None
        size, dim = x.shape[0], self.head_dim
        qkv = self.fused(x, step.gemv).view(size, self.heads + 2 * self.kv_heads, dim)
        cos, sin = (part.reshape(size, dim) for part in step.rope)
        rows, positions = step.batch.row_ids, step.batch.positions[:, 0]
        q = rope_store(qkv, cos, sin, kv.k_all, kv.v_all, rows, positions, self.heads)
        return q.view(size, 1, self.heads, dim)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.self_attn = SelfAttention(config, layer)
        self.mlp = MLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, x: Tensor, residual: Tensor | None, kv: LayerKV, step: Step
    ) -> tuple[Tensor, Tensor]:
        """The residual stream travels beside the blocks' outputs so that each add is fused
        into the next norm: x is the previous block's output (the embeddings when residual
        is None); returns this layer's MLP output and the stream before it."""
        h, residual = self.input_layernorm.add_forward(x, residual, step.triton)
        attended = self.self_attn(h, kv, step)
        h, residual = self.post_attention_layernorm.add_forward(attended, residual, step.triton)
        return self.mlp(h, step.triton, step.gemv), residual


class Backbone(nn.Module):
    """Embeddings, decoder layers and the final norm (HF's `model.` prefix)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class Transformer(nn.Module):
    """A qwen2 / llama causal LM over a KV cache, with a pluggable attention backend.

    `forward(input_ids, batch, cache)` runs one step (a prefill chunk or a decode step);
    without a cache it runs a plain causal forward over `input_ids` from position 0.
    """

    def __init__(self, config: ModelConfig, attention: AttentionBackend | None = None) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # kept out of the module tree: a backend's own weights are not part of HF's state dict
        self.__dict__["attention"] = attention or DenseAttention(config)
        self.triton_kernels: bool | None = None  # None: the fused kernels on CUDA only
        self.triton_gemv = True  # with them, single-row projections by our GEMV kernel
        # not a buffer: `.to(bfloat16)` would round the frequencies and wreck long positions
        self._rope_freq, self.rope_mscale = inverse_frequencies(config)
        self._rope_freq_on: dict[torch.device, Tensor] = {}
        self.register_load_state_dict_pre_hook(_fill_tied_head)

    attention: AttentionBackend

    def set_attention(self, backend: AttentionBackend) -> None:
        """Swap the attention backend (e.g. dense -> NSA); caches must be rebuilt after."""
        self.__dict__["attention"] = backend

    def extend_context(self, tokens: int) -> None:
        """Switch YaRN on when `tokens` exceed the trained context (`ModelConfig.with_context`);
        build KV caches and engines after this."""
        config = self.config.with_context(tokens)
        if config is not self.config:
            self.config = config
            self._rope_freq, self.rope_mscale = inverse_frequencies(config)
            self._rope_freq_on.clear()

    def fuse_projections(self) -> None:
        """Run q/k/v and gate/up as single matmuls (fewer kernels per decode step).

        Parameter names are unchanged; each fused group falls back to separate matmuls by
        itself if its parameters are later replaced (`.to()`, `load_state_dict(assign=True)`).
        """
        for layer in self.model.layers:
            layer.self_attn.fuse()
            layer.mlp.fuse()

    def forward(
        self,
        input_ids: Tensor,
        batch: StepBatch | None = None,
        cache: KVStore | None = None,
        logits: Logits = "all",
    ) -> Tensor | None:
        """input_ids [B, T] -> logits [B, T, V] ("all"), [B, V] ("last") or None, float32.

        `batch` and `cache` go together; without them the step starts at position 0 and
        attends only within `input_ids`.
        """
        if (batch is None) != (cache is None):
            raise ValueError("pass both batch and cache, or neither")
        if batch is None:
            batch = StepBatch.fresh(*input_ids.shape, device=input_ids.device)
        batch = self.attention.prepare(batch)
        x = self.model.embed_tokens(input_ids)
        rope = rope_cos_sin(
            batch.positions, self._rope_freq_for(x.device), self.rope_mscale, x.dtype
        )
        triton = x.is_cuda if self.triton_kernels is None else self.triton_kernels
        step = Step(rope, batch, self.attention, triton, triton and self.triton_gemv)
        residual: Tensor | None = None
        for index, layer in enumerate(self.model.layers):
            kv = cache.layer(index, batch.rows, batch.extent) if cache else self._scratch_kv(x)
            x, residual = layer(x, residual, kv, step)
        if logits == "none":
            return None
        if logits == "last":
            x = x[:, -1]
            residual = None if residual is None else residual[:, -1]
        x, _ = self.model.norm.add_forward(x, residual, triton)
        return linear(x, self.lm_head.weight, None, step.gemv).float()

    def _rope_freq_for(self, device: torch.device) -> Tensor:
        """RoPE frequencies [D/2] float32 on `device` (copied once per device, before any
        CUDA graph capture: prefill and graph warm-up run eagerly first)."""
        freq = self._rope_freq_on.get(device)
        if freq is None:
            freq = self._rope_freq_on[device] = self._rope_freq.to(device)
        return freq

    def _scratch_kv(self, x: Tensor) -> LayerKV:
        """A throwaway cache holding exactly this step's tokens (cache-less forward)."""
        size, length = x.shape[:2]
        shape = (size, length, self.config.num_kv_heads, self.config.head_dim)
        return LayerKV(x.new_empty(shape), x.new_empty(shape), slice(0, size), length)


def _fill_tied_head(module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: Any) -> None:
    """Tied models may omit `lm_head.weight` (GGUF has no output tensor then)."""
    if module.config.tie_embeddings:
        embed = state_dict.get(prefix + "model.embed_tokens.weight")
        if embed is not None:
            state_dict.setdefault(prefix + "lm_head.weight", embed)
