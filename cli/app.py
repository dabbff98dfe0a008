"""The root `nsa` command. Each subcommand lives in its own module and registers here."""

from __future__ import annotations

import typer

from .ask import ask_command
from .models import models_app

app = typer.Typer(
    name="nsa",
    help="Ask questions about whole codebases and long PDFs, on a Native Sparse Attention model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ask")(ask_command)
app.add_typer(models_app, name="models")


def main() -> None:
    """Console-script entry point."""
    app()
