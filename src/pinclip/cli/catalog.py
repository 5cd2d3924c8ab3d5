"""`pinclip catalog …`: check, import and build catalogs."""

from __future__ import annotations

import typer

from .catalog_build import app as build_app

app = typer.Typer(help="Check, import and build catalogs (DESIGN.md §2).", no_args_is_help=True)
app.add_typer(build_app, name="build")
