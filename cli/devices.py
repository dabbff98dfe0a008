"""Whether this machine has a usable CUDA GPU, without importing torch where it cannot.

Importing torch costs seconds; commands that only count tokens (`nsa ingest`, `nsa models
list`) should not pay it on a machine without an NVIDIA driver. Where the driver library is
present, torch decides (a CPU-only torch build cannot use the GPU).
"""

from __future__ import annotations

import ctypes
import sys


def cuda_available() -> bool:
    """`torch.cuda.is_available()`, answered without torch when no NVIDIA driver is loaded."""
    if sys.platform == "linux" and not _nvidia_driver_present():
        return False
    import torch

    return torch.cuda.is_available()


def _nvidia_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True
