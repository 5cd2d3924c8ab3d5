"""`catalog import`: CSV/JSONL (or parquet) tables plus an image folder -> a catalog directory.

The result is self-contained: good images are copied (or hard-linked with `link=True`)
into OUT/images, keeping their relative layout, and pins.image is rewritten to point there.
Bad rows are validated exactly as `catalog check` does and written to OUT/rejects.jsonl.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

from .catalog import IMAGES_DIR, REJECTS_FILE, read_parquet_table, write_catalog
from .images import DEFAULT_MAX_PIXELS, check_image, resolve_image_path
from .validate import (
    INVALID_JSON,
    MALFORMED_ROW,
    CatalogError,
    RawTable,
    Reject,
    ValidationReport,
    validate_tables,
)

TABLE_FORMATS = (".csv", ".jsonl", ".ndjson", ".parquet")


def read_csv_table(path: Path) -> RawTable:
    """A CSV file with a header row; empty cells are nulls, bad bytes stay visible as escapes."""
    rows: list[int] = []
    rejects: list[Reject] = []
    # utf-8-sig drops an Excel BOM; surrogateescape keeps invalid bytes so validation can name the row
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise CatalogError(f"{path.name}: empty file; the first line must name the columns")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise CatalogError(
                f"{path.name}: column {dupes[0]!r} appears twice in the header; rename one"
            )
        columns: dict[str, list] = {h: [] for h in header}
        line = reader.line_num + 1
        try:
            for record in reader:
                start, line = line, reader.line_num + 1
                if not record:
                    continue
                if len(record) != len(header):
                    detail = f"{len(record)} fields but the header has {len(header)}; check quoting and commas"
                    rejects.append(Reject(path.name, start, None, MALFORMED_ROW, detail))
                    continue
                for values, v in zip(columns.values(), record, strict=True):
                    values.append(v if v != "" else None)
                rows.append(start)
        except csv.Error as e:
            raise CatalogError(
                f"{path.name}: line {reader.line_num}: unreadable CSV ({e})"
            ) from None
    return RawTable(path.name, columns, rows, rejects)


def read_jsonl_table(path: Path) -> RawTable:
    """One JSON object per line; keys become columns (missing keys are nulls)."""
    columns: dict[str, list] = {}
    rows: list[int] = []
    rejects: list[Reject] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            text = raw.decode("utf-8", "surrogateescape").strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                rejects.append(
                    Reject(path.name, lineno, None, INVALID_JSON, f"not valid JSON ({e})")
                )
                continue
            if not isinstance(obj, dict):
                detail = f"expected a JSON object, found {type(obj).__name__}"
                rejects.append(Reject(path.name, lineno, None, INVALID_JSON, detail))
                continue
            for key in obj:
                if key not in columns:
                    columns[key] = [None] * len(rows)
            for key, values in columns.items():
                values.append(obj.get(key))
            rows.append(lineno)
    return RawTable(path.name, columns, rows, rejects)


def read_table(path: Path | str) -> RawTable:
    """Read a table by its extension: .csv, .jsonl/.ndjson or .parquet."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_table(path)
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl_table(path)
    if suffix == ".parquet":
        return read_parquet_table(path)
    raise CatalogError(
        f"{path.name}: unknown table format {suffix!r}; use one of {', '.join(TABLE_FORMATS)}"
    )


def _destination(source: Path, image_root: Path) -> str:
    """Catalog-relative path of an imported image: same layout under images/, outside files hashed."""
    if image_root in source.parents:
        return f"{IMAGES_DIR}/{source.relative_to(image_root).as_posix()}"
    digest = hashlib.sha1(str(source).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{IMAGES_DIR}/external/{digest}-{source.name}"


def _place(source: Path, dest: Path, link: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    if link:
        try:
            os.link(source, dest)
            return
        except OSError:  # another file system or no hard links: fall back to a copy
            pass
    shutil.copyfile(source, dest)


def import_catalog(
    out: Path | str,
    *,
    pins: Path | str,
    boards: Path | str,
    edges: Path | str,
    images: Path | str | None = None,
    link: bool = False,
    allow_absolute_paths: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: bool = False,
    meta: dict | None = None,
    overwrite: bool = False,
) -> tuple[Path, ValidationReport]:
    """Validate the tables and images, copy the good images, write the catalog and its rejects.

    Image paths in the pins table are relative to `images` (default: the pins file's folder).
    `meta` (name, version, license, attribution, ...) goes into catalog.json.
    """
    out = Path(out)
    image_root = Path(os.path.abspath(images if images is not None else Path(pins).parent))
    if not image_root.is_dir():
        raise CatalogError(f"{image_root}: image folder not found; pass --images DIR")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CatalogError(f"{out}: directory is not empty; choose a new OUT or pass --force")
    tables = [read_table(p) for p in (pins, boards, edges)]

    def check_and_place(source: str) -> None:
        check_image(source, max_pixels=max_pixels)
        _place(Path(source), out / _destination(Path(source), image_root), link)

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        frames, report = validate_tables(
            *tables,
            image_root=image_root,
            allow_absolute_paths=allow_absolute_paths,
            image_check=check_and_place,
            workers=workers,
            progress=progress,
        )
        pin_frame = frames["pins"]
        pin_frame["image"] = [
            _destination(
                resolve_image_path(image_root, img, allow_absolute=allow_absolute_paths), image_root
            )
            for img in pin_frame["image"]
        ]
        build = {
            "command": "import",
            "sources": {
                kind: Path(p).name
                for kind, p in (("pins", pins), ("boards", boards), ("edges", edges))
            },
            "images": "hard-linked" if link else "copied",
            "max_pixels": max_pixels,
            "allow_absolute_paths": allow_absolute_paths,
            "rejected_rows": len(report.rejects),
        }
        info = {
            "name": out.name,
            "version": "1",
            "license": None,
            "attribution": None,
            **(meta or {}),
            "build": build,
        }
        write_catalog(out, pin_frame, frames["boards"], frames["edges"], info)
        report.write_jsonl(out / REJECTS_FILE)
    except BaseException:
        if created:  # a failed import leaves no (empty or half-filled) folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out, report
