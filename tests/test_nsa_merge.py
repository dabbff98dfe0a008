"""merge_splits (flash-decoding's reduction of split partial results) in Triton vs PyTorch.

Without a GPU the kernel runs in Triton's interpreter (tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nsa_assist.kernels.nsa.combine import merge_splits, merge_splits_torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _parts(S, N, H, DV, seed):
    gen = torch.Generator().manual_seed(seed)
    o = torch.randn(S, N, H, DV, generator=gen)
    lse = torch.randn(S, N, H, generator=gen) * 4
    # splits that saw no key (-inf), and rows no split saw (every part -inf)
    lse[0, 0] = float("-inf")
    lse[:, 1, 0] = float("-inf")
    lse[:16, 2] = float("-inf")  # a first step of 16 splits that all saw nothing
    return o.to(DEVICE), lse.to(DEVICE)


@pytest.mark.parametrize(
    "S,N,H,DV", [(1, 3, 2, 8), (5, 7, 3, 48), (16, 40, 1, 128), (40, 3, 2, 16), (66, 4, 1, 64)]
)
def test_merge_matches_torch(S, N, H, DV):
    o, lse = _parts(S, N, H, DV, seed=S * 100 + N)
    got_o, got_lse = merge_splits(o, lse)
    want_o, want_lse = merge_splits_torch(o, lse)
    assert got_o.dtype == torch.float32 and got_o.shape == (N, H, DV)
    torch.testing.assert_close(got_lse, want_lse, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_o, want_o, rtol=1e-5, atol=1e-5)
    assert torch.equal(got_o[1, 0], torch.zeros(DV, device=DEVICE))  # no key seen: zeros
    assert got_lse[1, 0] == float("-inf")


def test_merge_lse_alone():
    _, lse = _parts(4, 9, 2, 8, seed=3)
    got_o, got_lse = merge_splits(None, lse)
    assert got_o is None
    torch.testing.assert_close(got_lse, torch.logsumexp(lse, 0), rtol=1e-5, atol=1e-5)
