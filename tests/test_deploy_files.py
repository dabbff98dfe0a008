"""The deploy files parse, and every `nsa` command line in them is one our CLI accepts
(so a renamed option cannot silently break the compose file or the KubeRay job)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml

from nsa_assist.cli.app import app

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NSA_CALL = re.compile(r"\bnsa ((?:worker|batch|jobs)\b[^&;\n]*)")


def command_lines(node: object) -> list[str]:
    if isinstance(node, dict):
        return [line for value in node.values() for line in command_lines(value)]
    if isinstance(node, list):
        return [line for value in node for line in command_lines(value)]
    if isinstance(node, str):
        return [match.group(1) for match in NSA_CALL.finditer(node)]
    return []


@pytest.mark.parametrize(
    "name",
    [
        "compose.yaml",
        *sorted(str(p.relative_to(DEPLOY)) for p in (DEPLOY / "kuberay").glob("*.yaml")),
    ],
)
def test_deploy_yaml_parses_and_its_nsa_commands_are_valid(name: str) -> None:
    documents = list(yaml.safe_load_all((DEPLOY / name).read_text()))
    assert documents and all(isinstance(doc, dict) for doc in documents)
    root = typer.main.get_command(app)
    for line in command_lines(documents):
        args = shlex.split(re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", line))
        command = root.get_command(None, args[0])
        assert command is not None, f"{name}: no `nsa {args[0]}`"
        command.make_context(args[0], args[1:])  # raises on an unknown option or bad value


def test_dockerfile_copies_every_package_folder() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for folder in ("kernels", "model", "workers", "ingest", "services", "cli"):
        assert f"COPY {folder}/ {folder}/" in text
