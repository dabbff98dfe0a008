"""NSAAttention: the NSA layer's parameters (compression MLP, gates) around the op.

It takes projected (and rotated) q, k, v from the model; it owns what NSA adds on top of dense
attention: φ for keys and values (`mean`, or the paper's MLP with an intra-block position
embedding) and the gate (a linear map of the layer input, sigmoid, one gate per branch and head).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import KernelsUserError
from .compress import block_view, compress_mean
from .config import NSAConfig
from .decode import nsa_decode, update_compressed_cache
from .op import DEFAULT_TUNING, KernelTuning, nsa_attention
from .reference import nsa_reference
from .varlen import cmp_cu_seqlens

POS_EMBED_STD = 0.02


class CompressionMLP(nn.Module):
    """φ(block) = mean(block) + W2 · gelu(W1 · flatten(block + pos)).

    W2 starts at zero, so an untrained layer compresses exactly like `mean`: a model trained
    dense starts from the training-free behaviour and distillation moves it from there.
    Blocks [n, H_kv, l, D] -> [n, H_kv, D]; one MLP shared by all KV heads.
    """

    def __init__(self, block: int, dim: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(block, dim) * POS_EMBED_STD)
        self.fc1 = nn.Linear(block * dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        hidden = nn.functional.gelu(self.fc1((blocks + self.pos.to(blocks.dtype)).flatten(-2)))
        return blocks.mean(-2) + self.fc2(hidden)


class NSAAttention(nn.Module):
    """One NSA attention layer for H query heads over H_kv KV heads.

    gate_dim: width of the layer input the gates read (needed for `gated` combine).
    """

    def __init__(
        self,
        cfg: NSAConfig,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        v_head_dim: int | None = None,
        gate_dim: int | None = None,
        tuning: KernelTuning = DEFAULT_TUNING,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise KernelsUserError("num_heads must be a multiple of num_kv_heads")
        if cfg.combine == "gated" and gate_dim is None:
            raise KernelsUserError("gated combine needs gate_dim")
        self.cfg, self.tuning = cfg, tuning
        self.num_heads = num_heads
        v_head_dim = head_dim if v_head_dim is None else v_head_dim
        self.k_phi = self.v_phi = None
        if cfg.compression == "mlp":
            self.k_phi = CompressionMLP(cfg.cmp_block, head_dim)
            self.v_phi = CompressionMLP(cfg.cmp_block, v_head_dim)
        self.gate = nn.Linear(gate_dim, 3 * num_heads) if cfg.combine == "gated" else None

    def compress(self, x: torch.Tensor, cu: list[int], phi: nn.Module | None) -> torch.Tensor:
        """Compressed tokens of packed x [N, H_kv, D] -> [N_cmp, H_kv, D]."""
        if phi is None:
            return compress_mean(x, cu, self.cfg)
        return phi(block_view(x, cu, self.cfg))

    def gates(self, gate_input: torch.Tensor | None) -> torch.Tensor | None:
        """[..., gate_dim] -> [..., H, 3] in (0, 1); None in union mode."""
        if self.gate is None:
            return None
        if gate_input is None:
            raise KernelsUserError("gated combine needs gate_input")
        return torch.sigmoid(self.gate(gate_input)).unflatten(-1, (self.num_heads, 3))

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        gate_input: torch.Tensor | None = None,
        cu_seqlens: list[int] | None = None,
        backend: str = "triton",
    ) -> torch.Tensor:
        """Packed q [N, H, Dk], k [N, H_kv, Dk], v [N, H_kv, Dv] -> o [N, H, Dv].

        backend `triton` runs the kernels (CUDA, or the interpreter); `reference` the plain
        PyTorch version (float32, any device).
        """
        cu = [0, q.shape[0]] if cu_seqlens is None else [int(x) for x in cu_seqlens]
        kc, vc = self.compress(k, cu, self.k_phi), self.compress(v, cu, self.v_phi)
        gates = self.gates(gate_input)
        if backend == "reference":
            cu_c = torch.tensor(cmp_cu_seqlens(cu, self.cfg))
            o = nsa_reference(q, k, v, kc, vc, self.cfg, gates, torch.tensor(cu), cu_c)
            return o.to(q.dtype)
        if backend != "triton":
            raise KernelsUserError(f"backend must be 'triton' or 'reference', got {backend!r}")
        kc, vc = kc.to(q.dtype), vc.to(q.dtype)
        gates = None if gates is None else gates.to(q.dtype)
        return nsa_attention(q, k, v, kc, vc, self.cfg, gates, cu, tuning=self.tuning)

    def decode(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        kc_cache: torch.Tensor,
        vc_cache: torch.Tensor,
        lengths: list[int],
        gate_input: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Newest token of each sequence, q [B, H, Dk] -> o [B, H, Dv].

        The caches hold the new token's k/v already; this writes the compressed blocks it
        completes into kc_cache/vc_cache before attending.
        """
        with torch.no_grad():
            update_compressed_cache(k_cache, kc_cache, lengths, self.cfg, self.k_phi)
            update_compressed_cache(v_cache, vc_cache, lengths, self.cfg, self.v_phi)
        gates = self.gates(gate_input)
        gates = None if gates is None else gates.to(q.dtype)
        return nsa_decode(
            q, k_cache, v_cache, kc_cache, vc_cache, lengths, self.cfg, gates,
            split_head_dim=self.tuning.split_head_dim,
        )  # fmt: skip
