"""`pinclip catalog build NAME OUT ...`: one command per registered catalog builder.

The commands, their flags and their help are generated from `BUILDERS` (each builder's
options dataclass), so a new builder needs no code here.
"""

from __future__ import annotations

import inspect
import json
import time
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from pinclip.data.builders import BUILDERS, CatalogBuilder
from pinclip.registry import Entry

app = typer.Typer(
    help=f"Build a catalog with a registered builder: {', '.join(BUILDERS.names())} "
    "(docs/datasets.md).",
    no_args_is_help=True,
)
console = Console()


def _done(root: Path, started: float) -> None:
    counts = json.loads((root / "catalog.json").read_text())["counts"]
    console.print(
        f"[green]wrote[/green] {root}: {counts['pins']:,} pins, {counts['boards']:,} boards, "
        f"{counts['edges']:,} edges in {time.perf_counter() - started:.1f} s"
    )


def _parameters(builder: CatalogBuilder) -> list[inspect.Parameter]:
    """OUT, one option per field of the builder's options dataclass, then --overwrite."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    hints = typing.get_type_hints(builder.options)
    params = [
        inspect.Parameter(
            "out",
            keyword,
            default=typer.Argument(..., help="Output directory (new or empty)."),
            annotation=Path,
        )
    ]
    for f in fields(builder.options):
        flag = f.metadata.get("cli", "--" + f.name.replace("_", "-"))
        option = typer.Option(f.default, flag, help=f.metadata.get("help"))
        params.append(inspect.Parameter(f.name, keyword, default=option, annotation=hints[f.name]))
    overwrite = typer.Option(False, "--overwrite", help="Replace a non-empty OUT.")
    params.append(inspect.Parameter("overwrite", keyword, default=overwrite, annotation=bool))
    return params


def _command(entry: Entry[CatalogBuilder]) -> None:
    builder = entry.value

    def command(**values: Any) -> None:
        out, overwrite = values.pop("out"), values.pop("overwrite")
        for f in fields(builder.options):  # a repeatable flag given no times: its default
            if isinstance(values[f.name], list | tuple) and not values[f.name]:
                values[f.name] = f.default
        started = time.perf_counter()
        root = builder.run(out, builder.make_options(entry.name, **values), overwrite=overwrite)
        _done(root, started)

    command.__signature__ = inspect.Signature(_parameters(builder))  # type: ignore[attr-defined]
    command.__doc__ = entry.help
    command.__name__ = entry.name
    app.command(entry.name)(command)


for _entry in BUILDERS:
    _command(_entry)
