"""Turn a caller's mistake into one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import typer
from rich.console import Console

USAGE_EXIT_CODE = 2

# (module, class) of every error a user can cause; imported lazily so `nsa --help` stays fast
# and a part that is not installed yet does not break the others.
_USER_ERRORS = (
    ("nsa_assist.ingest.errors", "IngestError"),
    ("nsa_assist.model.errors", "ModelError"),
    ("nsa_assist.workers.errors", "EngineError"),
    ("nsa_assist.services.errors", "ServiceError"),
)


def user_error_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, class_name in _USER_ERRORS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        error_type = getattr(module, class_name, None)
        if isinstance(error_type, type) and issubclass(error_type, BaseException):
            found.append(error_type)
    return tuple(found)


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr and return the exit to raise."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(USAGE_EXIT_CODE)


@contextlib.contextmanager
def user_errors_as_exit() -> Iterator[None]:
    """Inside this block, a known user error ends the command with one line and exit 2."""
    try:
        yield
    except KeyboardInterrupt:
        raise fail("interrupted") from None
    except user_error_types() as error:
        raise fail(str(error)) from None
