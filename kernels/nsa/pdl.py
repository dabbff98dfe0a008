"""Programmatic dependent launch (PDL) for a decode step's chain of small kernels.

A decode step is six short launches in a row (decode.py); between two of them the GPU sits
idle while the next grid is launched and its programs are placed. With PDL (Hopper and
later) a kernel launched with `launch_pdl` may start while the one before it still runs: each
of our decode kernels first waits for its predecessor to finish and its writes to be visible
(`gdc_wait`, so nothing it reads or overwrites is in flight), then lets its own successor
launch (`gdc_launch_dependents`). What overlaps is only the launch and placement of the next
grid, never work on data. CUDA graphs capture the dependency as a programmatic edge.

Off on the interpreter, before Hopper, and where this Triton lacks the launch option.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

try:
    import triton.language.extra.cuda as tl_cuda
except ImportError:  # a Triton without its CUDA extras
    tl_cuda = None

# decode kernels launch with PDL where the GPU and Triton allow it (bench/kernels.py
# --parts decode_pdl sweeps it); read at each call
DECODE_PDL = True


@functools.cache
def _supported(device: torch.device) -> bool:
    if device.type != "cuda" or not hasattr(tl_cuda, "gdc_wait"):
        return False
    if torch.cuda.get_device_capability(device)[0] < 9:
        return False
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
    except ImportError:
        return False
    return "launch_pdl" in CUDAOptions.__dataclass_fields__


def pdl_enabled(device: torch.device) -> bool:
    """Whether decode kernels on this device launch with PDL (DECODE_PDL and support)."""
    return DECODE_PDL and _supported(device)


def launch_options(pdl: bool) -> dict:
    """The launch keyword of a kernel that takes `PDL=pdl`."""
    return {"launch_pdl": True} if pdl else {}


@triton.jit
def wait_for_previous(PDL: tl.constexpr):
    """First statement of a PDL kernel: wait until the kernel before it has finished (its
    writes visible), then let the next one launch."""
    if PDL:
        tl_cuda.gdc_wait()
        tl_cuda.gdc_launch_dependents()
