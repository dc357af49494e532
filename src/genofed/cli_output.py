"""What every ``genofed`` command prints to: one stderr console and one way to fail."""

from __future__ import annotations

import typer
from rich.console import Console

# soft_wrap: never break a line at the terminal's width (80 columns when not a terminal):
# printed commands and paths must paste as they are.
console = Console(stderr=True, soft_wrap=True)


def fail(err: Exception) -> typer.Exit:
    """Print ``err`` readably and return the exit to raise (status 1)."""
    console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=1)


def warn(text: str) -> None:
    """Say what is legal but probably a mistake (the command still succeeds)."""
    console.print(f"[bold yellow]warning:[/] {text}")
