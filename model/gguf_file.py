"""Read a GGUF file's metadata and tensor directory, with tensor bytes memory-mapped.

`gguf.GGUFReader` builds a numpy view per array element, which takes 6-12 s for the
~100k vocabulary strings of SmolLM2 and longer for Qwen's 150k. This reader walks the same
format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) with `struct` and
`numpy.frombuffer` in a fraction of a second; dequantization still uses the `gguf` package.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from .errors import ModelFileError, UnsupportedModelError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# GGUF value type id -> (struct format, numpy dtype) of a scalar.
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("<B", "<u1"),
    1: ("<b", "<i1"),
    2: ("<H", "<u2"),
    3: ("<h", "<i2"),
    4: ("<I", "<u4"),
    5: ("<i", "<i4"),
    6: ("<f", "<f4"),
    7: ("<?", "<u1"),
    10: ("<Q", "<u8"),
    11: ("<q", "<i8"),
    12: ("<d", "<f8"),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's directory entry. `shape` is in numpy order (GGUF stores it reversed)."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    offset: int
    nbytes: int


class GGUFFile:
    """An open GGUF file: `metadata` (key -> value), `tensors` (name -> TensorInfo).

    Arrays of numbers come back as numpy arrays, arrays of strings as lists of str.
    `raw(tensor)` gives the tensor's bytes as a read-only uint8 view of the mapped file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:
            raise ModelFileError(f"cannot read GGUF file {path}: {error}") from None
        self._spans: dict[str, tuple[int, int]] = {}
        try:
            self.metadata, self.tensors = self._parse()
        except (struct.error, UnicodeDecodeError, ValueError, IndexError) as error:
            raise ModelFileError(f"{path} is not a valid GGUF file: {error}") from None

    def metadata_digest(self, prefix: str) -> str:
        """SHA-256 of the raw bytes of every metadata entry whose key starts with `prefix`.

        A content key for caches derived from part of the metadata (the tokenizer)."""
        digest = hashlib.sha256()
        for key in sorted(k for k in self._spans if k.startswith(prefix)):
            start, end = self._spans[key]
            digest.update(self._map[start:end])
        return digest.hexdigest()

    def raw(self, tensor: TensorInfo) -> np.ndarray:
        """The tensor's stored bytes, shaped [rows..., bytes per row] (no copy)."""
        data = np.frombuffer(self._map, dtype=np.uint8, count=tensor.nbytes, offset=tensor.offset)
        return data.reshape(*tensor.shape[:-1], -1)

    def _parse(self) -> tuple[dict[str, Any], dict[str, TensorInfo]]:
        cursor = _Cursor(self._map)
        if cursor.take(4) != MAGIC:
            raise ValueError("bad magic (not a GGUF file, or a big-endian one)")
        version = cursor.scalar("<I")
        if version not in VERSIONS:
            raise ValueError(f"GGUF version {version} (supported: {VERSIONS})")
        tensor_count, kv_count = cursor.scalar("<Q"), cursor.scalar("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            start = cursor.pos
            key = cursor.string()
            metadata[key] = cursor.value(cursor.scalar("<I"))
            self._spans[key] = (start, cursor.pos)
        infos = [self._tensor_info(cursor) for _ in range(tensor_count)]
        alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        data_start = -(-cursor.pos // alignment) * alignment
        tensors = {}
        for name, shape, qtype, offset, nbytes in infos:
            begin = data_start + offset
            if begin + nbytes > len(self._map):
                raise ValueError(f"tensor {name} runs past the end of the file (truncated?)")
            tensors[name] = TensorInfo(name, shape, qtype, begin, nbytes)
        return metadata, tensors

    def _tensor_info(self, cursor: _Cursor) -> tuple[str, tuple[int, ...], Any, int, int]:
        name = cursor.string()
        dims = [cursor.scalar("<Q") for _ in range(cursor.scalar("<I"))]
        type_id = cursor.scalar("<I")
        offset = cursor.scalar("<Q")
        try:
            qtype = GGMLQuantizationType(type_id)
        except ValueError:
            raise UnsupportedModelError(
                f"{self.path}: tensor {name} has unknown type {type_id}"
            ) from None
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        if dims[0] % block_size:
            raise ValueError(f"tensor {name}: row of {dims[0]} is not whole {qtype.name} blocks")
        count = int(np.prod(dims[1:], dtype=np.int64))
        nbytes = count * dims[0] // block_size * type_size
        return name, tuple(reversed(dims)), qtype, offset, nbytes


class _Cursor:
    """Sequential little-endian reads over a buffer."""

    def __init__(self, buffer: mmap.mmap) -> None:
        self.buffer = buffer
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.buffer):
            raise ValueError("unexpected end of file in the header")
        chunk = self.buffer[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buffer, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        return self.take(self.scalar("<Q")).decode("utf-8")

    def value(self, type_id: int) -> Any:
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            return self.array(self.scalar("<I"), self.scalar("<Q"))
        if type_id not in _SCALARS:
            raise ValueError(f"unknown metadata value type {type_id}")
        value = self.scalar(_SCALARS[type_id][0])
        return bool(value) if type_id == _BOOL else value

    def array(self, type_id: int, count: int) -> Any:
        if type_id == _STRING:
            return [self.string() for _ in range(count)]
        if type_id == _ARRAY:
            return [self.value(_ARRAY) for _ in range(count)]
        if type_id not in _SCALARS:
            raise ValueError(f"unknown metadata array type {type_id}")
        dtype = np.dtype(_SCALARS[type_id][1])
        if self.pos + count * dtype.itemsize > len(self.buffer):
            raise ValueError("unexpected end of file in an array")
        values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += count * dtype.itemsize
        return values.astype(bool) if type_id == _BOOL else values
