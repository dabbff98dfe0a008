"""The root `nsa` command. Each subcommand lives in its own module and registers here."""

from __future__ import annotations

import typer

from .ask import ask_command
from .batch import batch_command
from .ingest import ingest_command
from .jobs import jobs_app
from .models import models_app
from .summarize import summarize_command
from .worker import worker_command

app = typer.Typer(
    name="nsa",
    help="Ask questions about whole codebases and long PDFs, on a Native Sparse Attention model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ask")(ask_command)
app.add_typer(models_app, name="models")
app.command("worker")(worker_command)
app.command("batch")(batch_command)
app.add_typer(jobs_app, name="jobs")
app.command("ingest")(ingest_command)
app.command("summarize")(summarize_command)


def main() -> None:
    """Console-script entry point."""
    app()
