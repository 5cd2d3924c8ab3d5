"""`pinclip catalog build …`: the shipped catalog builders."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    help="Build a catalog: emoji (real, default), mdi (real icons, from npm) or synthetic (any size).",
    no_args_is_help=True,
)
console = Console()


def _done(root: Path, started: float) -> None:
    import json

    counts = json.loads((root / "catalog.json").read_text())["counts"]
    console.print(
        f"[green]wrote[/green] {root}: {counts['pins']:,} pins, {counts['boards']:,} boards, "
        f"{counts['edges']:,} edges in {time.perf_counter() - started:.1f} s"
    )


@app.command("emoji")
def emoji(
    out: Path = typer.Argument(..., help="Output directory (new or empty)."),
    size: int = typer.Option(128, help="Image side in pixels."),
    skin_tones: bool = typer.Option(
        False, "--skin-tones", help="Add skin-tone variants as near-duplicate pins."
    ),
    user_boards: int = typer.Option(2000, help="Number of simulated user boards."),
    seed: int = typer.Option(0, help="Seed of the simulated user boards."),
    limit: int | None = typer.Option(None, help="Keep only the first N emoji (quick tests)."),
    subgroup: list[str] | None = typer.Option(
        None, help="Keep only this Unicode subgroup (repeatable)."
    ),
    workers: int | None = typer.Option(None, help="Render processes (default: up to 2)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT."),
) -> None:
    """Real data: OpenMoji artwork, Unicode names and subgroups, simulated user boards."""
    from pinclip.data.builders.emoji import build_emoji_catalog

    started = time.perf_counter()
    root = build_emoji_catalog(
        out,
        size=size,
        skin_tones=skin_tones,
        user_boards=user_boards,
        seed=seed,
        limit=limit,
        subgroups=subgroup or None,
        workers=workers,
        overwrite=overwrite,
    )
    _done(root, started)


@app.command("mdi")
def mdi(
    out: Path = typer.Argument(..., help="Output directory (new or empty)."),
    package: Path | None = typer.Option(
        None,
        help="The @iconify-json/mdi tarball (`npm pack @iconify-json/mdi@1.2.3`); "
        "default: run npm pack.",
    ),
    size: int = typer.Option(128, help="Image side in pixels."),
    user_boards: int = typer.Option(6000, help="Number of simulated user boards."),
    seed: int = typer.Option(0, help="Seed of the simulated user boards."),
    limit: int | None = typer.Option(None, help="Keep only the first N icons (quick tests)."),
    workers: int | None = typer.Option(None, help="Render processes (default: up to 2)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT."),
) -> None:
    """Real data: Material Design Icons, their categories as curated boards, simulated user boards."""
    from pinclip.data.builders.mdi import build_mdi_catalog

    started = time.perf_counter()
    root = build_mdi_catalog(
        out,
        package=package,
        size=size,
        user_boards=user_boards,
        seed=seed,
        limit=limit,
        workers=workers,
        overwrite=overwrite,
    )
    _done(root, started)


@app.command("synthetic")
def synthetic(
    out: Path = typer.Argument(..., help="Output directory (new or empty)."),
    pins: int = typer.Option(10_000, help="Number of pins (10^3 … 10^7)."),
    seed: int = typer.Option(0, help="Seed: same seed, same catalog."),
    size: int = typer.Option(64, help="Image side in pixels."),
    topics: int | None = typer.Option(None, help="Latent topics (default: 50…500 by N)."),
    boards: int | None = typer.Option(None, help="User boards (default: max(topics, N/8))."),
    workers: int | None = typer.Option(
        None, help="Drawing processes (default: up to 2); output does not depend on it."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT."),
) -> None:
    """Any size, known ground truth: procedurally drawn pins from latent topics."""
    from pinclip.data.builders.synthetic import build_synthetic_catalog

    started = time.perf_counter()
    root = build_synthetic_catalog(
        out,
        pins=pins,
        seed=seed,
        size=size,
        topics=topics,
        boards=boards,
        workers=workers,
        overwrite=overwrite,
    )
    _done(root, started)
