"""The `pinclip` command line: a thin Typer face over the Python API (no logic here)."""

from __future__ import annotations

import typer

from . import catalog, demo, evaluate, models, serve, train

app = typer.Typer(
    name="pinclip",
    help="Train, evaluate and serve graph-aware multimodal embeddings (PinCLIP recipe).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(catalog.app, name="catalog")
app.command("models")(models.list_models)
app.command("train")(train.train)
app.command("demo")(demo.demo)
app.command("evaluate")(evaluate.evaluate)
app.command("compare")(evaluate.compare)
app.command("train-open-clip")(evaluate.train_open_clip)
app.command("embed")(serve.embed)
app.command("export")(serve.export)
app.add_typer(serve.index_app, name="index")
app.command("serve")(serve.serve)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from pinclip import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()
