"""Parsed maps as bytes, decoded only when asked for.

A warm run on a large repository finds thousands of maps in the parse cache but needs the
definitions of a few hundred files (the best ranked) and the words of none (the ranker's
index of them is stored per snapshot, rank_inputs.py). So a map is stored in two parts,
its definitions and its words, each marshalled (several times faster to load than pickle or
JSON), and `Decoded` turns bytes into objects on first access.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple, TypeVar

from .codemap import Definition, FileMap

T = TypeVar("T")


class StoredMap(NamedTuple):
    """One `FileMap` as stored: how many definitions it has, and its two parts as bytes."""

    defined: int
    definitions: bytes
    words: bytes


def encode(file_map: FileMap) -> StoredMap:
    """A `FileMap` as bytes."""
    return StoredMap(
        len(file_map.definitions),
        marshal.dumps([tuple(d) for d in file_map.definitions]),
        marshal.dumps((file_map.words, file_map.references)),
    )


def decode(stored: StoredMap) -> FileMap:
    words, references = marshal.loads(stored.words)
    return FileMap(decode_definitions(stored), references, words)


def decode_definitions(stored: StoredMap) -> tuple[Definition, ...]:
    return tuple(map(Definition._make, marshal.loads(stored.definitions)))


class Decoded(Mapping[str, T]):
    """Path -> the value of its content key, decoded from a `StoredMap` on first access and
    then kept; files with the same content share one value."""

    def __init__(
        self,
        keys: Mapping[str, str],
        values: dict[str, T | StoredMap],
        decode_one: Callable[[StoredMap], T],
    ) -> None:
        """`keys`: path -> content key; `values`: content key -> value, or what decodes to it."""
        self._keys = keys
        self._values = values
        self._decode = decode_one

    def __getitem__(self, path: str) -> T:
        key = self._keys[path]
        value = self._values[key]
        if isinstance(value, StoredMap):
            value = self._values[key] = self._decode(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, path: object) -> bool:
        return path in self._keys
