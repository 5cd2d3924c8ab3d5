"""`pinclip catalog build …`: the shipped catalog builders."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build a catalog: emoji (real, default) or synthetic (any size).", no_args_is_help=True)
