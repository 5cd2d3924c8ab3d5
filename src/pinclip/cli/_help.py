"""Option help read from a registry only when `--help` is asked for.

Some registries live in modules that import torch (baselines, evaluation tasks); reading
them while the CLI starts would cost every `pinclip` command seconds. A command made with
`lazy_help(param=callable)` fills those parameters' help when its help is printed.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from typer.core import TyperCommand


def lazy_help(**helps: Callable[[], str]) -> type[TyperCommand]:
    """A Typer command class whose parameters named in `helps` get `helps[name]()` as help."""

    class LazyHelpCommand(TyperCommand):
        def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            for param in self.params:
                if param.name in helps:
                    param.help = helps[param.name]()  # type: ignore[attr-defined]
            super().format_help(ctx, formatter)

    return LazyHelpCommand
