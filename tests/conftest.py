"""Shared pytest setup: the `gpu` marker skips without a CUDA device."""

from __future__ import annotations

import os

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if not _has_cuda():
    # Triton reads TRITON_INTERPRET when a kernel is decorated, so it must be set before any
    # test module imports nsa_assist.kernels: without a GPU the kernels run interpreted.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every torch.empty comes back NaN-filled (or -7 for ints), so a kernel that leaves a
    slot of its output unwritten shows it."""
    import torch

    real_empty = torch.empty

    def nan_empty(*size, **kw):
        x = real_empty(*size, **kw)
        return x.fill_(float("nan") if x.is_floating_point() else -7)

    monkeypatch.setattr(torch, "empty", nan_empty)
