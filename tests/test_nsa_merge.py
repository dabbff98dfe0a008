"""decode_combine (each branch's split partial results merged by log-sum-exp, then the gated
sum or the union softmax, in one Triton launch) vs PyTorch.

Without a GPU the kernel runs in Triton's interpreter (tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nsa_assist.kernels.nsa.combine import decode_combine, merge_splits_torch

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


# splits of the (compressed, selected, window) branches, rows N x H, Dv
CASES = [
    ((1, 1, 1), 3, 2, 8),
    ((5, 3, 2), 7, 3, 48),
    ((16, 17, 4), 40, 1, 128),
    ((40, 2, 66), 3, 2, 16),
]


@pytest.mark.parametrize("rows,cols", [(1, 128), (4, 16), (16, 32)], ids=lambda x: str(x))
@pytest.mark.parametrize("splits,N,H,DV", CASES)
def test_gated_matches_torch(splits, N, H, DV, rows, cols):
    """Rows and columns of Dv (48 in three 16-column programs, 128 in four of 32, ...) per
    program."""
    cmp, slc, win = (_parts(S, N, H, DV, seed=S * 100 + i) for i, S in enumerate(splits))
    gates = torch.rand(N, H, 3, device=DEVICE, dtype=torch.bfloat16)
    got = decode_combine(
        cmp, slc, win, gates, False, torch.bfloat16, rows_per_program=rows, cols_per_program=cols
    )
    merged = [merge_splits_torch(*part)[0] for part in (cmp, slc, win)]
    want = sum(gates[..., c, None].float() * merged[c] for c in range(3))
    assert got.dtype == torch.bfloat16 and got.shape == (N, H, DV)
    torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2)
    # row (1, 0) saw no key in any branch: merged zeros, so the gated sum is zero
    assert torch.equal(got[1, 0].float(), torch.zeros(DV, device=DEVICE))


@pytest.mark.parametrize("cols", [128, 16])
@pytest.mark.parametrize("splits,N,H,DV", CASES)
def test_union_matches_one_softmax_over_both_key_sets(splits, N, H, DV, cols):
    _, slc, win = (_parts(S, N, H, DV, seed=S * 7 + i) for i, S in enumerate(splits))
    got = decode_combine(
        (None, slc[1]), slc, win, None, union=True, out_dtype=torch.float32, cols_per_program=cols
    )
    # the union of disjoint key sets is one merge over all their partial results
    want, _ = merge_splits_torch(torch.cat((slc[0], win[0])), torch.cat((slc[1], win[1])))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[1, 0], torch.zeros(DV, device=DEVICE))
