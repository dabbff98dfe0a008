"""Command-line options several commands share, declared once so their help stays the same."""

from __future__ import annotations

from typing import Annotated

import typer

ModelOption = Annotated[
    str | None,
    typer.Option(help="Registry name, a .gguf file, or a Hugging Face-style folder."),
]
BudgetOption = Annotated[
    int | None,
    typer.Option(help="Context budget in tokens (default: 8192 on CPU, 65536 on GPU)."),
]
AnswerTokensOption = Annotated[int, typer.Option(help="Longest answer, in tokens.")]
StreamJsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object instead of streaming.")
]
