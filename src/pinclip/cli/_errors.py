"""How every command reports an expected failure: one red line on stderr, exit code 2.

`pinclip.cli.app` catches `PinclipError` (and only it) around every command and calls
`fail`; any other exception is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

stderr = Console(stderr=True)


def fail(err: Exception | str) -> NoReturn:
    """Print `error: <err>` and exit 2 (bad input or config: no traceback).

    The message is plain text, never Rich markup (a path or `pinclip[serve]` is printed as
    is), and is not wrapped mid-path."""
    stderr.print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
    raise typer.Exit(2) from None


#: Widest line a table is printed at when the output is not a terminal (a log, a pipe)
LOG_WIDTH_MAX = 1000


def print_table(console: Console, table: Table) -> None:
    """Print `table` whole: on a terminal at the terminal's width; in a log or a pipe at the
    table's own width (Rich's 80-column default there cut cells to 'pres…', '/tmp…')."""
    if not console.is_terminal:
        natural = Measurement.get(console, console.options.update(max_width=LOG_WIDTH_MAX), table)
        if natural.maximum > console.width:  # print(width=) is capped at the console's width
            console = Console(file=console.file, width=natural.maximum)
    console.print(table)
