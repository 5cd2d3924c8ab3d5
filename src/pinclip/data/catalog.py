"""The catalog on disk (format: docs/catalog.md): typed reader, deterministic writer, validation entry points.

A catalog is a directory with pins.parquet, boards.parquet, pin_board.parquet, images/ and
catalog.json. `read_catalog` returns only the good rows plus a `ValidationReport` of every
bad one; `write_catalog` gives byte-identical parquet for identical input.

In memory the text columns are Arrow arrays (pandas `str` columns backed by pyarrow, or a
`TextColumn`), never one Python object per cell: at 10^6 pins an object column costs
~0.5 GB per process that reads the catalog, an Arrow one the bytes of its strings plus offsets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pinclip.atomic import atomic_write_text, write_with
from pinclip.memory import trim_heap

from .images import DEFAULT_MAX_PIXELS, ImageError, check_image, load_image, resolve_image_path
from .validate import (
    KEPT_POOL,
    REQUIRED,
    STRING_COLUMNS,
    ArrowColumns,
    CatalogError,
    RawTable,
    Reject,
    ValidationReport,
    hash_ids,
    string_array,
    validate_tables,
)

__all__ = [
    "BOARDS_FILE",
    "EDGES_FILE",
    "FORMAT_VERSION",
    "IMAGES_DIR",
    "META_FILE",
    "PINS_FILE",
    "REJECTS_FILE",
    "Catalog",
    "CatalogError",
    "ImageError",
    "ImagePaths",
    "Reject",
    "TextColumn",
    "ValidationReport",
    "check_catalog",
    "pin_text",
    "read_catalog",
    "read_parquet_table",
    "hash_ids",
    "string_array",
    "write_catalog",
]

PINS_FILE = "pins.parquet"
BOARDS_FILE = "boards.parquet"
EDGES_FILE = "pin_board.parquet"
META_FILE = "catalog.json"
IMAGES_DIR = "images"
REJECTS_FILE = "rejects.jsonl"
FORMAT_VERSION = 1
FILES = {"pins": PINS_FILE, "boards": BOARDS_FILE, "edges": EDGES_FILE}
# Fixed writer settings: the bytes depend only on the rows (same pyarrow version).
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True)


def pin_text(title: object, description: object = None) -> str:
    """Title and description joined: what a text tower reads for a pin (training and serving)."""
    t = "" if title is None or title != title else str(title)  # None / NaN -> ""
    d = "" if description is None or description != description else str(description)
    return f"{t}. {d}".strip(". ") if d else t


ROWS_PER_CHUNK = 1 << 16  # rows turned into Python objects at a time (bounded transient memory)
#: tables this long are read from a memory-mapped Arrow copy of their parquet file, kept in
#: MAPPED_DIR beside it: at 10^6 pins that is ~400 MiB of file pages instead of process memory
MAPPED_MIN_ROWS = 50_000
MAPPED_DIR = ".arrow"
MAPPED_SOURCE_KEY = b"pinclip.source"  # the parquet file's size:mtime_ns:inode


class TextColumn(Sequence[str]):
    """A sequence of strings held in an Arrow array or its chunks (UTF-8 bytes + offsets).

    Behaves like the list it replaces (`len`, `col[i]` -> str or None, iteration,
    `col[a:b]` and `col[index_array]` -> list[str]) without a Python object per row, so a
    per-pin text list costs its bytes, not ~60 bytes of object header per pin.
    """

    __slots__ = ("array",)

    def __init__(self, values: Any) -> None:
        self.array = string_array(values)

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice | Sequence[int] | np.ndarray) -> list[str]: ...
    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.array[i].to_pylist()
        if isinstance(i, (int, np.integer)):
            return self.array[int(i)].as_py()  # negative and out-of-range like a list
        idx = np.asarray(i)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} texts")
        return self.array.take(np.where(idx < 0, idx + len(self), idx)).to_pylist()

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.array), ROWS_PER_CHUNK):
            yield from self.array[start : start + ROWS_PER_CHUNK].to_pylist()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TextColumn):
            return self.array.equals(other.array)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like the list it replaces

    def __repr__(self) -> str:
        return f"TextColumn({len(self)} texts, {self.array.nbytes} bytes)"


class ImagePaths(Sequence[Any]):
    """Each pin's image file, resolved on access from the catalog's Arrow `image` column (a
    per-pin list of paths without holding a Path object per pin); `as_str` gives `str`s."""

    __slots__ = ("as_str", "catalog", "images")

    def __init__(self, catalog: Catalog, *, as_str: bool = False) -> None:
        self.catalog, self.as_str = catalog, as_str
        self.images = TextColumn(catalog.column("pins", "image"))

    def _path(self, image: str) -> Path | str:
        path = self.catalog.image_path(image)
        return str(path) if self.as_str else path

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, (int, np.integer)):
            return self._path(self.images[i])
        return [self._path(image) for image in self.images[i]]

    def __iter__(self) -> Iterator[Any]:
        return (self._path(image) for image in self.images)


@dataclass
class Catalog:
    """The good rows of a catalog; image paths resolve against `root`."""

    root: Path
    pins: pd.DataFrame
    boards: pd.DataFrame
    edges: pd.DataFrame
    meta: dict = field(default_factory=dict)
    allow_absolute_paths: bool = False

    def image_path(self, image: str) -> Path:
        """The file of a pin's `image` value; raises ImageError if it escapes the catalog."""
        return resolve_image_path(self.root, image, allow_absolute=self.allow_absolute_paths)

    def column(self, table: str, name: str) -> pa.Array:
        """A string column of `pins`, `boards` or `edges` as Arrow text (no copy when
        the catalog was read by `read_catalog`)."""
        return string_array(getattr(self, table)[name])

    def image_paths(self, *, as_str: bool = False) -> ImagePaths:
        """Every pin's image file in pin order, resolved on access (`image_path` rules)."""
        return ImagePaths(self, as_str=as_str)

    def _text_chunks(self) -> Iterator[list[str]]:
        """`pin_text` of every pin, ROWS_PER_CHUNK pins at a time (exactly its rules)."""
        title = self.column("pins", "title")
        n = len(title)
        desc = self.column("pins", "description") if "description" in self.pins else None
        for start in range(0, n, ROWS_PER_CHUNK):
            stop = min(start + ROWS_PER_CHUNK, n)
            t = title[start:stop].to_pylist()
            d = desc[start:stop].to_pylist() if desc is not None else [None] * (stop - start)
            yield [pin_text(a, b) for a, b in zip(t, d, strict=True)]

    def texts(self) -> TextColumn:
        """Every pin's text (title + description), in pin order, as Arrow text in chunks."""
        chunks = [
            pa.array(c, pa.large_string(), memory_pool=KEPT_POOL) for c in self._text_chunks()
        ]  # kept as chunks: concatenating would hold every text twice for a moment
        texts = TextColumn(pa.chunked_array(chunks, pa.large_string()))
        trim_heap()  # the per-chunk Python strings are gone: hand their pages back
        return texts

    def has_text(self) -> np.ndarray:
        """Boolean [n_pins]: False for image-only pins (blank title and description)."""
        flags = [np.array([bool(t.strip()) for t in c], dtype=bool) for c in self._text_chunks()]
        trim_heap()
        return np.concatenate(flags) if flags else np.zeros(0, dtype=bool)

    def load_image(self, image: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """A pin's image as RGB, with the same safety checks as `catalog check`."""
        return load_image(self.image_path(image), max_pixels=max_pixels)


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    """No pandas index or metadata; text typed `string` (also all-null text columns, integer ids)."""
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    for i, f in enumerate(table.schema):
        all_null = f.name in STRING_COLUMNS and pa.types.is_null(f.type)
        int_id = f.name in ("pin_id", "board_id") and pa.types.is_integer(f.type)
        if all_null or int_id or pa.types.is_large_string(f.type):  # pandas 3 gives large_string
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
    return table


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    write_with(path, lambda f: pq.write_table(_to_arrow(df), f, **PARQUET_OPTIONS))


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_catalog(
    root: Path | str,
    pins: pd.DataFrame,
    boards: pd.DataFrame,
    edges: pd.DataFrame,
    meta: dict | None = None,
) -> Path:
    """Write the three tables and catalog.json into `root` (atomically, deterministically).

    `meta` should hold name, version, license/attribution and build parameters; the counts
    (rows per table, boards per kind) and format version are added here. Rows are written as
    given: validation is the reader's job.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tables = {"pins": pins, "boards": boards, "edges": edges}
    for kind, df in tables.items():
        for name in REQUIRED[kind]:
            if name not in df.columns:
                raise CatalogError(
                    f"{FILES[kind]}: missing required column '{name}' in the table given to write_catalog"
                )
    for kind, df in tables.items():
        _write_parquet(root / FILES[kind], df)
    counts = {kind: len(df) for kind, df in tables.items()}
    if "kind" in boards.columns:
        counts |= {f"{k}_boards": int((boards["kind"] == k).sum()) for k in ("curated", "user")}
    _write_json(
        root / META_FILE, {**(meta or {}), "counts": counts, "format_version": FORMAT_VERSION}
    )
    return root


def read_parquet_table(path: Path, name: str | None = None) -> RawTable:
    """One parquet file as a RawTable (binary text columns decoded, invalid UTF-8 kept visible)."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise CatalogError(
            f"{name}: file not found at {path}; every catalog needs {', '.join(FILES.values())}"
        )
    try:
        table = _read_kept(path)
    except (pa.ArrowException, OSError) as e:
        raise CatalogError(
            f"{name}: not a readable parquet file ({e}); rewrite it with pyarrow or pandas"
        ) from None
    return RawTable(name, ArrowColumns(table), range(table.num_rows), arrow=table)


def _read_kept(path: Path) -> pa.Table:
    """The file's table as the catalog keeps it: text as large_string (pandas' `str` columns,
    no cast later), so that the columns of rows all kept are used as read, not copied.

    A large table is read from its memory-mapped Arrow copy (`mapped_table`). Otherwise it
    is decoded into `KEPT_POOL` (malloc: the decode's scratch pages go back to the kernel
    with `trim_heap`)."""
    schema = pq.read_schema(path, memory_map=True)
    large = pa.schema(
        [f.with_type(pa.large_string()) if pa.types.is_string(f.type) else f for f in schema],
        metadata=schema.metadata,
    )
    mapped = mapped_table(path, large)
    if mapped is not None:
        return mapped
    default = pa.default_memory_pool()
    pa.set_memory_pool(KEPT_POOL)  # pq.read_table takes no pool of its own
    try:
        return pq.read_table(path, memory_map=True, schema=large)
    finally:
        pa.set_memory_pool(default)


def mapped_table(path: Path, schema: pa.Schema | None = None) -> pa.Table | None:
    """A parquet file of `MAPPED_MIN_ROWS` rows or more as a table memory-mapped from its
    Arrow IPC copy in `MAPPED_DIR` (cast to `schema` if given): its columns are file pages
    the kernel shares between processes and reclaims, not process memory.

    The copy is made on first read, one row group at a time (bounded memory), atomically,
    and remade when the parquet file changes (its size, mtime and inode are recorded in the
    copy). None for a smaller file, or when its folder is not writable: read it into memory."""
    file = pq.ParquetFile(path, memory_map=True)
    if file.metadata.num_rows < MAPPED_MIN_ROWS:
        return None
    schema = schema or file.schema_arrow
    copy = path.parent / MAPPED_DIR / f"{path.name}.arrow"
    st = path.stat()
    source = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()
    table = _open_mapped(copy)
    if (
        table is None
        or (table.schema.metadata or {}).get(MAPPED_SOURCE_KEY) != source
        or not table.schema.equals(schema)  # made for another reader's types
    ):
        tagged = schema.with_metadata({**(schema.metadata or {}), MAPPED_SOURCE_KEY: source})

        def write(f: Any) -> None:
            with pa.ipc.new_file(f, tagged) as out:
                for i in range(file.num_row_groups):
                    out.write_table(file.read_row_group(i).cast(tagged))

        try:
            copy.parent.mkdir(exist_ok=True)
            write_with(copy, write)
        except OSError:
            return None
        table = pa.ipc.open_file(pa.memory_map(str(copy))).read_all()
    return table.replace_schema_metadata(schema.metadata)


def _open_mapped(copy: Path) -> pa.Table | None:
    """An Arrow copy memory-mapped (no data read; None if missing or unreadable)."""
    try:
        return pa.ipc.open_file(pa.memory_map(str(copy))).read_all()
    except (pa.ArrowException, OSError):
        return None


def _read_meta(root: Path) -> dict:
    path = root / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatalogError(f"{META_FILE}: not valid JSON ({e}); fix or delete it") from None
    if not isinstance(meta, dict):
        raise CatalogError(f"{META_FILE}: expected a JSON object, found {type(meta).__name__}")
    return meta


def read_catalog(
    root: Path | str,
    *,
    check_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_absolute_paths: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[Catalog, ValidationReport]:
    """Read and validate a catalog; return its good rows and the report of the bad ones.

    Raises CatalogError only when the catalog cannot be read at all. `check_images=False`
    skips opening image files (path-escape checks still apply).
    """
    root = Path(root)
    if not root.is_dir():
        raise CatalogError(
            f"{root}: no such catalog directory; build one with `pinclip catalog build emoji {root}` "
            "or `pinclip catalog import`"
        )
    meta = _read_meta(root)
    tables = [read_parquet_table(root / FILES[kind]) for kind in ("pins", "boards", "edges")]

    def image_check(path: str) -> None:
        check_image(path, max_pixels=max_pixels)

    frames, report = validate_tables(
        *tables,
        image_root=root,
        allow_absolute_paths=allow_absolute_paths,
        image_check=image_check if check_images else None,
        workers=workers,
        progress=progress,
    )
    del tables  # the Python values validation needed; the kept rows are Arrow columns
    trim_heap()  # their freed pages (and Arrow's decode buffers) back to the kernel
    catalog = Catalog(
        root, frames["pins"], frames["boards"], frames["edges"], meta, allow_absolute_paths
    )
    return catalog, report


def check_catalog(
    root: Path | str, *, rejects: Path | str | None = None, **options
) -> ValidationReport:
    """Validate a catalog and write rejects.jsonl (into the catalog, or to `rejects`)."""
    _, report = read_catalog(root, **options)
    report.write_jsonl(Path(rejects) if rejects else Path(root) / REJECTS_FILE)
    return report
