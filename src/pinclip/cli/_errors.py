"""How every command reports an expected failure: one red line on stderr, exit code 2.

`pinclip.cli.app` catches `PinclipError` (and only it) around every command and calls
`fail`; any other exception is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

stderr = Console(stderr=True)


def fail(err: Exception | str) -> NoReturn:
    """Print `error: <err>` and exit 2 (bad input or config: no traceback).

    The message is plain text, never Rich markup (a path or `pinclip[serve]` is printed as
    is), and is not wrapped mid-path."""
    stderr.print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
    raise typer.Exit(2) from None
