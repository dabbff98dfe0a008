"""Commands that only count tokens never import torch (its import costs seconds)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nsa_assist.cli.devices import _nvidia_driver_present


@pytest.mark.skipif(_nvidia_driver_present(), reason="with an NVIDIA driver, torch decides")
def test_tokenizer_and_device_choice_need_no_torch() -> None:
    code = (
        "import sys\n"
        "from nsa_assist.cli.devices import cuda_available\n"
        "from nsa_assist.cli.ingest import token_counter\n"
        "from nsa_assist.cli.runtime import choose_model\n"
        "from nsa_assist.model.source import load_tokenizer\n"
        "assert not cuda_available() and choose_model(None).device == 'cpu'\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
