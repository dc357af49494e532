"""What every ``genofed`` command prints to: one stderr console and one way to fail."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)


def fail(err: Exception) -> typer.Exit:
    """Print ``err`` readably and return the exit to raise (status 1)."""
    console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=1)
