"""The `pinclip` command line: a thin Typer face over the Python API (no logic here)."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from pinclip.errors import PinclipError

from . import catalog, demo, evaluate, models, serve, train
from ._errors import fail


class _Commands(TyperGroup):
    """Runs every command: an expected failure (a PinclipError) is one `error:` line and
    exit 2; anything else is a bug and shows its traceback (exit 1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PinclipError as err:
            fail(err)


app = typer.Typer(
    cls=_Commands,
    name="pinclip",
    help="Train, evaluate and serve graph-aware multimodal embeddings (PinCLIP recipe).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(catalog.app, name="catalog")
app.command("models")(models.list_models)
app.command("push-to-hub")(models.push_to_hub)
app.command("merge")(models.merge)
app.command("train")(train.train)
app.command("demo")(demo.demo)
app.command("evaluate", cls=evaluate.EVALUATE_COMMAND)(evaluate.evaluate)
app.command("compare", cls=evaluate.COMPARE_COMMAND)(evaluate.compare)
app.command("train-open-clip")(evaluate.train_open_clip)
app.command("embed")(serve.embed)
app.command("export")(serve.export)
app.add_typer(serve.index_app, name="index")
app.command("serve")(serve.serve)


def _print_version(value: bool) -> None:
    """Eager: runs while the options are parsed, before Typer asks for a command."""
    if value:
        from pinclip import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        expose_value=False,
        callback=_print_version,
        help="Print the version and exit.",
    ),
    log_level: str = typer.Option(
        None,
        "--log-level",
        envvar="PINCLIP_LOG_LEVEL",
        help="DEBUG, INFO (default), WARNING or ERROR: what log lines pinclip prints.",
    ),
) -> None:
    from pinclip.log import setup_logging

    setup_logging(log_level)


def main() -> None:
    """The console script: an expected failure anywhere (`PinclipError`, e.g. a missing extra)
    is one red `error:` line and exit 2; anything else is a bug and keeps its traceback."""
    from pinclip.errors import PinclipError

    from ._errors import fail

    try:
        app()
    except PinclipError as err:
        try:
            fail(err)
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
