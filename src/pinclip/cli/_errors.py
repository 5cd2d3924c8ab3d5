"""How every command reports an expected failure: one red line on stderr, exit code 2."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

stderr = Console(stderr=True)


def fail(err: Exception | str) -> NoReturn:
    """Print `error: <err>` and exit 2 (bad input or config: no traceback)."""
    from rich.markup import escape

    stderr.print(f"[red]error:[/] {escape(str(err))}")  # "pinclip[serve]" is not markup
    raise typer.Exit(2) from None
