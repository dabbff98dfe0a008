"""Named arrays in one file: the same values back, memory-mapped and read-only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nsa_assist.ingest.array_file import load_arrays, save_arrays


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    arrays = {
        "ints": rng.integers(-5, 10**6, 1001, dtype=np.int32),
        "floats": rng.standard_normal((7, 3)),
        "flags": rng.random(13) > 0.5,
        "empty": np.zeros(0, dtype=np.int64),
        "text": np.frombuffer("a\nbé\n".encode(), dtype=np.uint8),
    }
    save_arrays(tmp_path / "x.arrays", arrays)
    loaded = load_arrays(tmp_path / "x.arrays")
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        assert np.array_equal(loaded[name], array), name
    assert not loaded["ints"].flags.writeable


def test_saving_again_replaces_the_file_and_a_stranger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.arrays"
    save_arrays(path, {"a": np.arange(3)})
    before = load_arrays(path)
    save_arrays(path, {"a": np.arange(5)})
    assert before["a"].tolist() == [0, 1, 2]  # a reader keeps what it mapped
    assert load_arrays(path)["a"].tolist() == [0, 1, 2, 3, 4]
    assert list(tmp_path.iterdir()) == [path]
    path.write_bytes((12).to_bytes(8, "little") + b'{"magic": 1}')
    with pytest.raises(ValueError, match="not an array file"):
        load_arrays(path)
