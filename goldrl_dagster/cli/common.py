"""What every command module shares: one way to fail with a plain message."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import typer

from live_engine.cli import configure_logging

__all__ = ["command_group", "configure_logging", "fail", "status"]


def command_group(help_text: str) -> typer.Typer:
    """A sub-command group (``goldrl db``, ``goldrl dataset``, …) with goldrl's conventions.

    Help is rendered plainly by click: typer's Rich help boxes cost 0.4 s of imports on every
    ``--help``, more than the rest of the start-up together.
    """
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` once on stderr; return the ``typer.Exit`` to raise.

    Args:
        message: What went wrong, as the operator should read it.
        code: Exit status (1: the action failed, 2: the request was malformed).
    """
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def status(message: str) -> AbstractContextManager[Any]:
    """A spinner on stderr while a slow step runs (nothing when stderr is not a terminal)."""
    from rich.console import Console

    return Console(stderr=True).status(message)
