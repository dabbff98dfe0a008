"""Named numpy arrays in one file, memory-mapped when loaded.

The ranker's stored inputs of a large repository are ~30 MB of arrays, of which a question
reads the few postings of its terms and some graph arrays. Mapping the file costs almost
nothing, and the pages a question never touches are never read (`np.savez` reads, checks
and copies all of it: ~0.1 s). Layout: 8 bytes of header length, a JSON header (name ->
dtype, shape, offset), then each array's bytes at an offset aligned to `ALIGN`.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import numpy as np

ALIGN = 64
MAGIC = "nsa-arrays-1"


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `path` atomically (a reader sees the old file or the new one)."""
    header: dict[str, list] = {}
    offset = 0
    for name, array in arrays.items():
        offset = _aligned(offset)
        header[name] = [array.dtype.str, list(array.shape), offset]
        offset += array.nbytes
    text = json.dumps({"magic": MAGIC, "arrays": header}).encode()
    start = _aligned(8 + len(text))
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as out:
        out.write(len(text).to_bytes(8, "little") + text)
        for name, array in arrays.items():
            out.seek(start + header[name][2])
            out.write(np.ascontiguousarray(array).tobytes())
    os.replace(partial, path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of `path`, read-only views of the mapped file."""
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    size = int.from_bytes(mapped[:8], "little")
    header = json.loads(mapped[8 : 8 + size])
    if header.get("magic") != MAGIC:
        raise ValueError(f"{path} is not an array file")
    start = _aligned(8 + size)
    found: dict[str, np.ndarray] = {}
    for name, (dtype, shape, offset) in header["arrays"].items():
        count = int(np.prod(shape))
        if count == 0:  # may lie past the end of the file
            found[name] = np.empty(shape, np.dtype(dtype))
            continue
        array = np.frombuffer(mapped, np.dtype(dtype), count, start + offset)
        found[name] = array.reshape(shape)
    return found


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN
