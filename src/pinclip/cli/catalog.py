"""`pinclip catalog …`: check, import and build catalogs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pinclip.data.catalog import REJECTS_FILE, ValidationReport, check_catalog
from pinclip.data.images import DEFAULT_MAX_PIXELS
from pinclip.data.importer import import_catalog
from pinclip.data.validate import IMAGE_ONLY_PIN

from ._errors import print_table
from .catalog_build import app as build_app

app = typer.Typer(
    help="Check, import and build catalogs (the format: docs/catalog.md).", no_args_is_help=True
)
app.add_typer(build_app, name="build")

console = Console()
errors = Console(stderr=True)

MAX_PIXELS = typer.Option(
    DEFAULT_MAX_PIXELS, "--max-pixels", help="Reject images with more pixels (decompression bombs)."
)
ALLOW_ABSOLUTE = typer.Option(
    False, "--allow-absolute-paths", help="Accept absolute image paths outside the catalog."
)
WORKERS = typer.Option(None, "--workers", help="Threads for image checks (default: all cores).")
STRICT = typer.Option(
    False, "--strict", help="Exit 1 when any row is rejected (default: exit 0 if readable)."
)
IMAGE_ONLY_SHOWN = 20  # image-only pin ids printed (all kept ones are in the report)


def print_report(report: ValidationReport, rejects_path: Path) -> None:
    """Rows kept and rejected per file, then the rejects by reason."""
    files = Table(title="Catalog rows")
    for col in ("file", "kept", "rejected"):
        files.add_column(col, justify="left" if col == "file" else "right")
    for name in report.files.values():
        files.add_row(name, f"{report.good.get(name, 0):,}", f"{report.rejected(name):,}")
    print_table(console, files)
    if report.rejects:
        reasons = Table(title="Rejected rows by reason")
        for col in ("file", "reason", "rows"):
            reasons.add_column(col, justify="right" if col == "rows" else "left")
        for (name, reason), n in sorted(report.by_reason().items()):
            reasons.add_row(name, reason, f"{n:,}")
        print_table(console, reasons)
    for (name, what), n in sorted(report.warnings.items()):
        console.print(f"[yellow]warning:[/] {name}: {n:,} {what}, kept")
        if what == IMAGE_ONLY_PIN and report.image_only:
            shown = report.image_only[:IMAGE_ONLY_SHOWN]
            more = f" … and {n - len(shown):,} more" if n > len(shown) else ""
            console.print("  image-only pin ids: " + ", ".join(shown) + more, soft_wrap=True)
    console.print(f"{len(report.rejects):,} rejected rows written to {rejects_path}")


def exit_if_strict(report: ValidationReport, strict: bool) -> None:
    """--strict: exit 1 when any row was rejected, so scripts and CI can stop on it."""
    if strict and report.rejects:
        errors.print(f"[red]--strict[/]: {len(report.rejects):,} rows rejected")
        raise typer.Exit(1)


@app.command("check")
def check(
    root: Path = typer.Argument(..., help="Catalog directory."),
    rejects: Path | None = typer.Option(
        None, "--rejects", help=f"Where to write the rejects (default DIR/{REJECTS_FILE})."
    ),
    images: bool = typer.Option(True, "--images/--no-images", help="Open and decode every image."),
    max_pixels: int = MAX_PIXELS,
    allow_absolute_paths: bool = ALLOW_ABSOLUTE,
    workers: int | None = WORKERS,
    strict: bool = STRICT,
) -> None:
    """Validate a catalog; exit 0 if it could be read (with --strict: and nothing was
    rejected), 1 if --strict and rows were rejected, 2 if it could not be read."""
    rejects_path = rejects or root / REJECTS_FILE
    report = check_catalog(
        root,
        rejects=rejects_path,
        check_images=images,
        max_pixels=max_pixels,
        allow_absolute_paths=allow_absolute_paths,
        workers=workers,
        progress=True,
    )
    print_report(report, rejects_path)
    exit_if_strict(report, strict)


@app.command("import")
def import_(
    out: Path = typer.Argument(..., help="New catalog directory."),
    pins: Path = typer.Option(..., "--pins", help="Pins table (.csv, .jsonl or .parquet)."),
    boards: Path = typer.Option(..., "--boards", help="Boards table."),
    edges: Path = typer.Option(..., "--edges", help="Pin-board table."),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="Folder the image paths are relative to (default: the pins file's folder).",
    ),
    link: bool = typer.Option(
        False, "--link", help="Hard-link images instead of copying (falls back to copying)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Catalog name (default: OUT's folder name)."
    ),
    license_: str | None = typer.Option(
        None, "--license", help="License of the data, stored in catalog.json."
    ),
    attribution: str | None = typer.Option(
        None, "--attribution", help="Attribution text, stored in catalog.json."
    ),
    force: bool = typer.Option(False, "--force", help="Write into OUT even if it is not empty."),
    max_pixels: int = MAX_PIXELS,
    allow_absolute_paths: bool = ALLOW_ABSOLUTE,
    workers: int | None = WORKERS,
    strict: bool = STRICT,
) -> None:
    """Convert CSV/JSONL tables plus an image folder into a catalog (bad rows go to OUT/rejects.jsonl)."""
    meta = {
        k: v
        for k, v in (("name", name), ("license", license_), ("attribution", attribution))
        if v is not None
    }
    out, report = import_catalog(
        out,
        pins=pins,
        boards=boards,
        edges=edges,
        images=images,
        link=link,
        allow_absolute_paths=allow_absolute_paths,
        max_pixels=max_pixels,
        workers=workers,
        progress=True,
        meta=meta,
        overwrite=force,
    )
    print_report(report, out / REJECTS_FILE)
    console.print(f"catalog written to {out}")
    exit_if_strict(report, strict)
