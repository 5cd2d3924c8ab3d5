"""How every command reports an expected failure: one red line on stderr, exit code 2."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

stderr = Console(stderr=True)


def fail(err: Exception | str) -> NoReturn:
    """Print `error: <err>` and exit 2 (bad input or config: no traceback)."""
    stderr.print(f"[red]error:[/] {err}")
    raise typer.Exit(2) from None
