"""Row validation shared by `catalog check` and `catalog import`.

Tables arrive as `RawTable`s (column lists of plain Python values, whatever the file format).
`validate_tables` turns every bad row into a `Reject` with a fixed reason string and keeps the
good rows, so nothing is silently dropped and one bad row never stops the rest. The good rows
come back with their text columns as Arrow-backed pandas `str` columns (`STRING_DTYPE`): the
Python values exist only while validating.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinclip.atomic import atomic_open
from pinclip.errors import PinclipError
from pinclip.memory import bound_heap_growth, trim_heap

from .images import ImageError, check_files, progress_bar, resolve_image_str

# Reasons found in the tables themselves (image reasons live in pinclip.data.images).
INVALID_UTF8 = "invalid utf-8"
INVALID_ID = "missing or invalid id"
DUPLICATE_PIN = "duplicate pin id"
DUPLICATE_BOARD = "duplicate board id"
NON_STRING_TEXT = "non-string text"
EMPTY_TEXT = "empty text"
INVALID_KIND = "invalid kind"
MALFORMED_ROW = "malformed row"
INVALID_JSON = "invalid json"
EDGE_UNKNOWN_PIN = "edge to unknown pin"
EDGE_UNKNOWN_BOARD = "edge to unknown board"
EDGE_REJECTED_PIN = "edge to rejected pin"
EDGE_REJECTED_BOARD = "edge to rejected board"
DUPLICATE_EDGE = "duplicate edge"
# Warnings: rows that are kept but worth counting in the summary.
IMAGE_ONLY_PIN = "image-only pins (no title or description)"
IMAGE_ONLY_LISTED = 1000  # ids of image-only pins a report keeps (bounded at any scale)

TABLES = ("pins", "boards", "edges")
REQUIRED = {
    "pins": ("pin_id", "image"),
    "boards": ("board_id", "title"),
    "edges": ("pin_id", "board_id"),
}
OPTIONAL = {
    "pins": ("title", "description", "link", "created_at", "kind"),
    "boards": ("description",),
    "edges": (),
}
TEXT = {
    "pins": ("title", "description", "link", "kind"),
    "boards": ("title", "description", "kind"),
}
KINDS = {"pins": {"organic", "ad"}, "boards": {"curated", "user"}}
_BATCH_ROWS = 65_536  # rows of a column made Python values (or image paths checked) at a time
_EDGE_ROWS = 1 << 18  # edges whose id lookups and masks are held at once
# Columns that must hold text; parquet binary columns with these names are decoded as UTF-8.
STRING_COLUMNS = frozenset({"pin_id", "board_id", "image", "title", "description", "link", "kind"})


def _string_dtype() -> pd.StringDtype:
    """pandas' Arrow-backed string dtype with NaN for missing values (the `str` of pandas 3)."""
    try:
        return pd.StringDtype("pyarrow", na_value=np.nan)  # pandas >= 2.3
    except TypeError:  # pragma: no cover - pandas 2.1/2.2
        return pd.StringDtype("pyarrow_numpy")


STRING_DTYPE = _string_dtype()
#: Where the kept rows of a catalog live: malloc, so freed pages go back to the kernel
#: (`pinclip.memory.trim_heap`); Arrow's default pool keeps freed pages of the parquet
#: decode for reuse (~0.4 KiB per pin measured at 10^5 pins, BENCHMARKS.md §7).
KEPT_POOL = pa.system_memory_pool()


def string_array(values: Any) -> pa.Array | pa.ChunkedArray:
    """Text values (a pandas column of any string dtype, numpy/Arrow array or list) as Arrow
    text; a column that is already Arrow-backed keeps its buffers and chunks (no copy, no
    concatenation: a memory-mapped catalog's columns stay file pages)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        if isinstance(values, (pd.Series, pd.Index)):
            values = values.array
        arr = pa.array(values, from_pandas=True)  # pandas' Arrow columns hand over their buffers
    if pa.types.is_null(arr.type):
        arr = arr.cast(pa.string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise TypeError(f"expected text values, found Arrow type {arr.type}")
    return arr


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 [len(ids)]: pandas' 64-bit hash of each id (the same for the same text), made
    `_BATCH_ROWS` ids at a time: a Python string per id only within a batch."""
    parts = [
        pd.util.hash_array(ids.slice(s, _BATCH_ROWS).to_numpy(zero_copy_only=False))
        for s in range(0, len(ids), _BATCH_ROWS)
    ]
    return np.concatenate([np.zeros(0, np.uint64), *parts])


def string_series(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    """An Arrow string array as a pandas column of `STRING_DTYPE` (buffers shared, not copied)."""
    chunked = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    if pa.types.is_null(chunked.type):
        chunked = chunked.cast(pa.string())
    return pd.Series(STRING_DTYPE.__from_arrow__(chunked), copy=False)


class CatalogError(PinclipError):
    """The catalog cannot be read at all (missing directory, file or required column)."""


@dataclass(frozen=True)
class Reject:
    """One bad row: where it is (file, row), which id it had, why it was rejected."""

    file: str
    row: int
    id: str | None
    reason: str
    detail: str


@dataclass
class ValidationReport:
    """Good-row counts per file and every reject, in file and row order."""

    files: dict[str, str] = field(default_factory=dict)  # table -> file name as read
    good: dict[str, int] = field(default_factory=dict)  # file name -> rows kept
    rejects: list[Reject] = field(default_factory=list)
    warnings: dict[tuple[str, str], int] = field(default_factory=dict)  # (file, what) -> kept rows
    #: ids of kept image-only pins, the first `IMAGE_ONLY_LISTED` (their count: `warnings`)
    image_only: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejects

    def rejected(self, file: str) -> int:
        return sum(r.file == file for r in self.rejects)

    def by_reason(self) -> dict[tuple[str, str], int]:
        """(file, reason) -> number of rejected rows."""
        return dict(Counter((r.file, r.reason) for r in self.rejects))

    def write_jsonl(self, path: Path) -> Path:
        """Write one JSON object per rejected row (atomically, `pinclip.atomic`)."""
        path = Path(path)
        with atomic_open(path, "w", encoding="utf-8") as f:
            for r in self.rejects:
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
        return path


class ArrowColumns(Mapping[str, list]):
    """The columns of an Arrow table as Python lists, each made on first use only.

    Validation looks at ids, text and image paths; a column it never reads (timestamps,
    numbers, links, extra text) is never turned into one Python object per row: the kept
    rows are taken from Arrow (`_column`). Binary text columns decode as UTF-8 with
    surrogate escapes, so an invalid byte stays visible to the UTF-8 check.
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._lists: dict[str, list] = {}

    def __getitem__(self, name: str) -> list:
        if name not in self._lists:
            if name not in self.table.column_names:
                raise KeyError(name)
            column = self.table.column(name)
            values = column.to_pylist()
            if name in STRING_COLUMNS and (
                pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)
            ):
                values = [
                    v.decode("utf-8", "surrogateescape") if v is not None else None for v in values
                ]
            self._lists[name] = values
        return self._lists[name]

    def __contains__(self, name: object) -> bool:  # without making the list
        return name in self.table.column_names

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.column_names)

    def __len__(self) -> int:
        return self.table.num_columns


@dataclass
class RawTable:
    """A table as read from disk: columns of Python values plus the row number of each row.

    `rows[i]` is what a reject reports: the 0-based row index for parquet, the 1-based line
    number for CSV/JSONL. `rejects` holds rows that could not even be parsed.
    """

    file: str
    columns: Mapping[str, list]  # a dict, or `ArrowColumns` (lists made on first use)
    rows: Sequence[int]  # a list, or a range for parquet (row i is row i)
    rejects: list[Reject] = field(default_factory=list)
    #: the table as read, when it came from Arrow: kept rows of its string columns are taken
    #: from it directly (no round trip through Python objects)
    arrow: pa.Table | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def arrow_typed(self, name: str) -> bool:
        """True when column `name` came from Arrow typed as anything but binary: its values
        are valid UTF-8 `str`s (string columns) or not text at all, so the UTF-8 check and,
        for string columns, the type check have nothing to find there."""
        if self.arrow is None or name not in self.arrow.column_names:
            return False
        t = self.arrow.schema.field(name).type
        return not (pa.types.is_binary(t) or pa.types.is_large_binary(t))

    def arrow_text(self, name: str) -> bool:
        """True when column `name` came from Arrow typed as text (str or null per row)."""
        if self.arrow is None or name not in self.arrow.column_names:
            return False
        t = self.arrow.schema.field(name).type
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)

    def require(self, names: tuple[str, ...]) -> None:
        for name in names:
            if name not in self.columns:
                found = ", ".join(self.columns) or "none"
                raise CatalogError(
                    f"{self.file}: missing required column '{name}' (found: {found}); "
                    f"add a '{name}' column (see docs/catalog.md)"
                )


def is_utf8(value: str) -> bool:
    """False for strings holding undecodable bytes (surrogate escapes) or lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_id(value: object) -> str | None:
    """Ids are text; integers are accepted and turned into text, anything else is invalid."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Problems(dict):
    """row index -> (reason, detail); the first problem found for a row wins."""

    def add(self, i: int, reason: str, detail: str) -> None:
        self.setdefault(i, (reason, detail))


def _check_utf8(table: RawTable, problems: _Problems, columns: list[str] | None = None) -> None:
    for name in columns or table.columns:
        if table.arrow_typed(name):  # decoded by Arrow: valid UTF-8 or not text
            continue
        for i, v in enumerate(table.columns[name]):
            if isinstance(v, str) and not is_utf8(v):
                problems.add(
                    i,
                    INVALID_UTF8,
                    f"column '{name}' is not valid UTF-8 text; re-encode the file as UTF-8",
                )


def _entity_ids(
    table: RawTable, id_col: str, duplicate_reason: str, problems: _Problems
) -> Sequence[str | None]:
    """Normalise ids; the first row with a valid id owns it, later rows are duplicates."""
    col = _arrow_strings(table, id_col)
    if col is not None:  # Arrow text ids: the same rejects, no Python value per row
        blank = _blank(col)
        rows = np.flatnonzero(~blank)
        # 64-bit hashes (no hash table of strings); exact codes only if two ids collide
        owners, later, first = _repeats(hash_ids(col)[rows], rows)
        if len(later) and not pc.all(pc.equal(col.take(later), col.take(first))).as_py():
            owners, later, first = _repeats(_positions(col, pc.unique(col))[rows], rows)
        for i in np.flatnonzero(blank):
            raw = col[int(i)].as_py()
            problems.add(int(i), INVALID_ID, f"{id_col} is {_short(raw)}; give a non-empty text id")
        for i, j in zip(later, first, strict=True):
            problems.add(
                int(i),
                duplicate_reason,
                f"{id_col} {col[int(i)].as_py()!r} already used at row {table.rows[j]}; "
                "later rows are rejected",
            )
        return _ArrowIds(col, owners)
    ids = [_as_id(v) for v in table.columns[id_col]]
    owner: dict[str, int] = {}
    for i, (raw, key) in enumerate(zip(table.columns[id_col], ids, strict=True)):
        if i in problems:
            continue
        if key is None:
            problems.add(i, INVALID_ID, f"{id_col} is {_short(raw)}; give a non-empty text id")
        elif key in owner:
            first = table.rows[owner[key]]
            problems.add(
                i,
                duplicate_reason,
                f"{id_col} {key!r} already used at row {first}; later rows are rejected",
            )
        else:
            owner[key] = i
    return ids


def _check_text(table: RawTable, kind: str, problems: _Problems) -> np.ndarray:
    """Reject bad text; return the pin rows with no text at all (image-only pins: kept)."""
    fast = _check_text_arrow(table, kind, problems)
    if fast is not None:
        return fast
    cols = table.columns
    for name in TEXT[kind]:
        if name not in cols or table.arrow_text(name):  # only text or nulls there
            continue
        for i, v in enumerate(cols[name]):
            if v is not None and not isinstance(v, str):
                problems.add(
                    i,
                    NON_STRING_TEXT,
                    f"column '{name}' holds {type(v).__name__} {_short(v)}, expected text",
                )

    def filled(name: str, i: int) -> bool:
        v = cols[name][i] if name in cols else None
        return isinstance(v, str) and bool(v.strip())

    image_only = []
    for i in range(len(table)):
        if kind == "pins" and not (filled("title", i) or filled("description", i)):
            image_only.append(i)  # an upload with no text: the cold-start case of the image path
        if kind == "boards" and not filled("title", i):
            problems.add(i, EMPTY_TEXT, "board title is empty; every board needs a title")
    for i, v in enumerate(cols.get("kind", ())):
        if v is not None and v not in KINDS[kind]:
            problems.add(i, INVALID_KIND, f"kind {_short(v)} is not one of {sorted(KINDS[kind])}")
    return np.asarray(image_only, dtype=np.int64)


def _check_text_arrow(table: RawTable, kind: str, problems: _Problems) -> np.ndarray | None:
    """`_check_text` over Arrow text columns (the same rejects and image-only rows, no Python
    value per row); None when a text column is not Arrow text (then Python runs)."""
    names = [n for n in TEXT[kind] if n in table.columns]
    if not all(table.arrow_text(n) for n in names):
        return None
    n = len(table)
    filled = {
        name: ~_blank(_arrow_strings(table, name)) if name in names else np.zeros(n, bool)
        for name in ("title", "description")
    }
    image_only = np.zeros(0, dtype=np.int64)
    if kind == "pins":
        image_only = np.flatnonzero(~(filled["title"] | filled["description"]))
    if kind == "boards":
        for i in np.flatnonzero(~filled["title"]):
            problems.add(int(i), EMPTY_TEXT, "board title is empty; every board needs a title")
    if "kind" in names:
        col = _arrow_strings(table, "kind")
        allowed = pa.array(sorted(KINDS[kind]), col.type)
        bad = pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, value_set=allowed)))
        for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
            v = col[int(i)].as_py()
            problems.add(
                int(i), INVALID_KIND, f"kind {_short(v)} is not one of {sorted(KINDS[kind])}"
            )
    return image_only


def _check_images(
    table: RawTable,
    problems: _Problems,
    *,
    image_root: Path,
    allow_absolute_paths: bool,
    image_check: Callable[[str], object] | None,
    workers: int | None,
    progress: bool,
) -> None:
    """Path escapes are rejected from the text alone; files are checked in parallel, each
    distinct path once per batch of `_BATCH_ROWS` rows (memory bounded by the batch, not
    the catalog): no Python value per row outlives its batch."""
    root = os.path.abspath(image_root)
    col = _arrow_strings(table, "image")
    batches = (
        [table.columns["image"]]
        if col is None
        else (col.slice(s, _BATCH_ROWS).to_pylist() for s in range(0, len(col), _BATCH_ROWS))
    )

    def check_batch(rows: list[int], paths: list[str], advance: Callable[[int], None]) -> None:
        first: dict[str, int] = {}  # each distinct path of the batch is opened once
        codes = np.array([first.setdefault(p, len(first)) for p in paths], np.int64)
        advance(len(rows) - len(first))  # rows whose path another row of the batch has
        failures = check_files(list(first), image_check, workers=workers, advance=advance)
        for k, error in sorted(failures.items()):
            for i in np.flatnonzero(codes == k):
                problems.add(rows[i], error.reason, error.detail)

    with progress_bar(
        progress and image_check is not None, len(table), "checking images"
    ) as advance:
        start = 0
        for values in batches:
            batch_rows, batch_paths = [], []
            for k, image in enumerate(values):
                if start + k in problems:
                    continue
                try:
                    path = resolve_image_str(root, image, allow_absolute=allow_absolute_paths)
                except ImageError as e:
                    problems.add(start + k, e.reason, e.detail)
                    continue
                if image_check is not None:
                    batch_rows.append(start + k)
                    batch_paths.append(path)
            advance(len(values) - len(batch_rows))  # rows not opened: rejected or unchecked
            if batch_rows:
                check_batch(batch_rows, batch_paths, advance)
            start += len(values)


class _ArrowIds(Sequence[str | None]):
    """The normalised ids (`_as_id`) of an Arrow text column, made per row on access;
    `owners`: the first row of each valid id (entity tables)."""

    def __init__(
        self, column: pa.Array | pa.ChunkedArray, owners: np.ndarray | None = None
    ) -> None:
        self.column = column
        self.owners = owners

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, i):  # type: ignore[override]  # rows of rejects only: ints
        return _as_id(self.column[int(i)].as_py())


# Ids Arrow finds null or blank, and ids holding a character Python's str.strip() may treat
# differently from Arrow's utf8_trim_whitespace (the same set in pyarrow 26; a guard for other
# versions), are decided by `_as_id` itself
_PY_ONLY_SPACE = "[\x1c-\x1f]"


def _arrow_strings(table: RawTable, name: str) -> pa.ChunkedArray | None:
    """Column `name` as read (chunks, not a copy), when it came from Arrow as text (or nulls)."""
    if name not in table.columns or not table.arrow_text(name):
        return None
    col = table.arrow.column(name)
    return (
        pa.chunked_array([pa.nulls(len(col), pa.string())]) if pa.types.is_null(col.type) else col
    )


def _repeats(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(owners, later, first) for `rows` (ascending) holding `keys`: the rows first holding
    each key (ascending); the later rows holding a key seen before (ascending) and, for each,
    the first row holding its key. One stable argsort: ~3 words per row at the peak."""
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    new = np.ones(len(ranked), dtype=bool)
    np.not_equal(ranked[1:], ranked[:-1], out=new[1:])
    del ranked
    starts = np.flatnonzero(new)
    repeat = np.flatnonzero(~new)
    first = rows[order[starts[np.searchsorted(starts, repeat, side="right") - 1]]]
    later = rows[order[repeat]]
    by_row = np.argsort(later, kind="stable")
    return np.sort(rows[order[starts]]), later[by_row], first[by_row]


def _positions(col: pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
    """int32 [len(col)]: each value's position in `keys`, -1 where absent or null."""
    found = pc.index_in(col, value_set=keys)
    out = np.empty(len(col), dtype=np.int32)
    start = 0
    for chunk in found.chunks:  # filled per chunk: no second full-length copy
        out[start : start + len(chunk)] = pc.fill_null(chunk, -1).to_numpy(zero_copy_only=False)
        start += len(chunk)
    return out


def _blank(col: pa.ChunkedArray) -> np.ndarray:
    """Rows that are null or blank as Python's `str.strip()` sees them (`_as_id` is None):
    Arrow's trim finds them, Python decides the rows holding `_PY_ONLY_SPACE`. `_BATCH_ROWS`
    rows at a time: the trimmed copy never holds a whole column."""
    bad = np.zeros(len(col), dtype=bool)
    for start in range(0, len(col), _BATCH_ROWS):
        part = col.slice(start, _BATCH_ROWS)
        maybe = pc.or_(
            pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(part)), 0),
            pc.match_substring_regex(part, _PY_ONLY_SPACE),
        )
        for i in np.flatnonzero(pc.fill_null(maybe, True).to_numpy(zero_copy_only=False)):
            bad[start + i] = _as_id(part[int(i)].as_py()) is None
    return bad


#: every id an entity row owns -> whether that row was kept: a dict, or (column, owner rows,
#: kept) arrays
Known = dict[str, bool] | tuple[pa.Array | pa.ChunkedArray, np.ndarray, np.ndarray]


def _owned(ids: Sequence[str | None], problems: _Problems) -> Known:
    """Every id a row owns (its first row, even a rejected one) and whether it was kept."""
    if isinstance(ids, _ArrowIds) and ids.owners is not None:
        owners = ids.owners
        return ids.column, owners, ~np.isin(owners, list(problems))
    known: dict[str, bool] = {}
    for i, key in enumerate(ids):
        if key is not None and key not in known:
            known[key] = i not in problems
    return known


def _as_dict(known: Known) -> dict[str, bool]:
    if isinstance(known, dict):
        return known
    column, owners, kept = known
    return dict(zip(column.take(owners).to_pylist(), kept.tolist(), strict=True))


class _IdLookup:
    """Finds ids among every id an entity row owns by their 64-bit hashes (`hash_ids`): 12
    bytes per id, not a hash table of the strings; each hash match is confirmed on the
    text. Two owned ids sharing a hash (~n²/2^65) fall back to Arrow's exact lookup."""

    def __init__(self, known: Known) -> None:
        if isinstance(known, dict):  # every id Arrow can hold (valid UTF-8)
            keys = [k for k in known if is_utf8(k)]
            known = (
                pa.array(keys, pa.large_string()),
                np.arange(len(keys)),
                np.fromiter((known[k] for k in keys), bool, len(keys)),
            )
        self.column, self.owners, kept = known
        self.kept = np.append(kept, True)  # position -1 (unknown): masked by the caller
        hashes = hash_ids(self.column)[self.owners]  # no copy of the owned ids' text
        self.order = np.argsort(hashes).astype(np.int32)
        self.hashes = hashes[self.order]
        self.exact = None
        if len(self.hashes) and (self.hashes[1:] == self.hashes[:-1]).any():
            keys = self.column.take(self.owners)
            self.exact = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys

    def __len__(self) -> int:
        return len(self.owners)

    def positions(self, values: pa.ChunkedArray) -> np.ndarray:
        """int32 [len(values)]: each value's position among the owned ids, -1 where absent
        or null; `_BATCH_ROWS` values at a time."""
        if self.exact is not None:
            return _positions(values, self.exact)
        out = np.full(len(values), -1, dtype=np.int32)
        if not len(self.hashes):
            return out
        for start in range(0, len(values), _BATCH_ROWS):
            part = values.slice(start, _BATCH_ROWS)
            hashes = hash_ids(part)
            at = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
            hit = np.flatnonzero(self.hashes[at] == hashes)
            pos = self.order[at[hit]]
            same = pc.equal(part.take(hit), _take(self.column, self.owners[pos]))
            confirmed = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
            out[start + hit[confirmed]] = pos[confirmed]
        return out


def _take(column: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """`column[rows]`, taken chunk by chunk: Arrow's take concatenates a chunked column
    first (a copy of a whole memory-mapped column per call)."""
    if isinstance(column, pa.Array):
        return column.take(rows)
    starts = np.cumsum([0] + [len(c) for c in column.chunks])
    chunk = np.searchsorted(starts, rows, side="right") - 1
    order = np.argsort(chunk, kind="stable")
    bounds = np.searchsorted(chunk[order], np.arange(column.num_chunks + 1))
    pieces = [
        column.chunk(k).take(rows[order[a:b]] - starts[k])
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        if b > a
    ]
    by_chunk = pa.chunked_array(pieces, column.type)
    return by_chunk.take(np.argsort(order))  # back in the order of `rows` (a small copy)


def _check_edges_arrow(
    table: RawTable, pins: Known, boards: Known, problems: _Problems
) -> tuple[Sequence, Sequence] | None:
    """`_check_edges` over Arrow columns: the same rejects, reasons and details, without a
    Python value per edge (ids matched by their hashes, `_IdLookup`; duplicates on sorted
    pair keys). Everything but one int64 pair key per edge is made `_EDGE_ROWS` edges at a time.
    None when the table is not Arrow text ids (then the Python path runs)."""
    src = table.arrow
    if src is None or not all(table.arrow_typed(c) for c in src.column_names):
        return None
    cols = {}
    for name in ("pin_id", "board_id"):
        t = src.schema.field(name).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return None
        cols[name] = src.column(name)  # chunks as read: Arrow's kernels take them as they are
    pin_keys, board_keys = _IdLookup(pins), _IdLookup(boards)
    trim_heap()  # hashing made a Python string per id: their pages back
    n_boards = max(len(board_keys), 1)
    # (pin position × boards + board position) of each edge still open, a distinct negative
    # number for each edge rejected before the duplicate check
    pair = np.empty(src.num_rows, dtype=np.int64)
    found: dict[str, list[np.ndarray]] = {}  # reason -> rows, in row order per reason

    def reject(reason: str, mask: np.ndarray, open_: np.ndarray, start: int) -> None:
        rows = np.flatnonzero(mask)
        open_[rows] = False  # the first reason found for an edge is its reject
        found.setdefault(reason, []).append(rows + start)

    for start in range(0, len(pair), _EDGE_ROWS):
        pin_ids = cols["pin_id"].slice(start, _EDGE_ROWS)
        board_ids = cols["board_id"].slice(start, _EDGE_ROWS)
        bad_pin, bad_board = _blank(pin_ids), _blank(board_ids)
        pp, bp = pin_keys.positions(pin_ids), board_keys.positions(board_ids)
        open_ = np.ones(len(pp), dtype=bool)
        reject(INVALID_ID, bad_pin | bad_board, open_, start)
        reject(EDGE_UNKNOWN_PIN, open_ & (pp < 0), open_, start)
        reject(EDGE_UNKNOWN_BOARD, open_ & (bp < 0), open_, start)
        reject(EDGE_REJECTED_PIN, open_ & ~pin_keys.kept[pp], open_, start)
        reject(EDGE_REJECTED_BOARD, open_ & ~board_keys.kept[bp], open_, start)
        part = pair[start : start + len(pp)]
        part[:] = pp
        part *= n_boards
        part += bp
        closed = np.flatnonzero(~open_)
        part[closed] = -1 - (start + closed)
        trim_heap()  # the slice's lookups (Python strings, Arrow buffers): pages back
    later, first = _repeated(pair)
    del pair

    raw = lambda name, i: cols[name][int(i)].as_py()  # noqa: E731
    for i in np.concatenate(found.get(INVALID_ID, [[]])).astype(np.int64):
        col = "pin_id" if _as_id(raw("pin_id", i)) is None else "board_id"
        problems.add(
            int(i), INVALID_ID, f"{col} is {_short(raw(col, i))}; give a non-empty text id"
        )
    messages = {
        EDGE_UNKNOWN_PIN: lambda i: f"pin_id {raw('pin_id', i)!r} is not in the pins table",
        EDGE_UNKNOWN_BOARD: lambda i: f"board_id {raw('board_id', i)!r} is not in the boards table",
        EDGE_REJECTED_PIN: lambda i: f"pin {raw('pin_id', i)!r} was rejected (see its own reject)",
        EDGE_REJECTED_BOARD: lambda i: (
            f"board {raw('board_id', i)!r} was rejected (see its own reject)"
        ),
    }
    for reason, message in messages.items():
        for i in np.concatenate(found.get(reason, [[]])).astype(np.int64):
            problems.add(int(i), reason, message(i))
    for i, j in zip(later, first, strict=True):
        p, b = raw("pin_id", i), raw("board_id", i)
        problems.add(
            int(i), DUPLICATE_EDGE, f"pin {p!r} is already on board {b!r} at row {table.rows[j]}"
        )
    return _ArrowIds(cols["pin_id"]), _ArrowIds(cols["board_id"])


def _repeated(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(later, first): the rows holding a key an earlier row holds (ascending) and, for
    each, the first row holding it. One sorted copy of `keys` finds the repeated values
    (usually none); only the rows holding one of them are ranked (`_repeats`)."""
    ranked = np.sort(keys)
    values = ranked[1:][ranked[1:] == ranked[:-1]]
    del ranked
    none = np.zeros(0, dtype=np.int64)
    if not len(values):
        return none, none
    values = np.unique(values)
    rows = np.concatenate(
        [none]
        + [
            np.flatnonzero(np.isin(keys[s : s + _EDGE_ROWS], values)) + s
            for s in range(0, len(keys), _EDGE_ROWS)
        ]
    )
    _, later, first = _repeats(keys[rows], rows)
    return later, first


def _check_edges(
    table: RawTable, pins: Known, boards: Known, problems: _Problems
) -> tuple[Sequence, Sequence]:
    """`pins`/`boards` map every id seen to whether its row was kept."""
    fast = _check_edges_arrow(table, pins, boards, problems)
    if fast is not None:
        return fast
    pins, boards = _as_dict(pins), _as_dict(boards)
    _check_utf8(table, problems)
    pin_ids = [_as_id(v) for v in table.columns["pin_id"]]
    board_ids = [_as_id(v) for v in table.columns["board_id"]]
    seen: dict[tuple[str, str], int] = {}
    for i, (p, b) in enumerate(zip(pin_ids, board_ids, strict=True)):
        if i in problems:
            continue
        if p is None or b is None:
            col, raw = (
                ("pin_id", table.columns["pin_id"][i])
                if p is None
                else ("board_id", table.columns["board_id"][i])
            )
            problems.add(i, INVALID_ID, f"{col} is {_short(raw)}; give a non-empty text id")
        elif p not in pins:
            problems.add(i, EDGE_UNKNOWN_PIN, f"pin_id {p!r} is not in the pins table")
        elif b not in boards:
            problems.add(i, EDGE_UNKNOWN_BOARD, f"board_id {b!r} is not in the boards table")
        elif not pins[p]:
            problems.add(i, EDGE_REJECTED_PIN, f"pin {p!r} was rejected (see its own reject)")
        elif not boards[b]:
            problems.add(i, EDGE_REJECTED_BOARD, f"board {b!r} was rejected (see its own reject)")
        elif (p, b) in seen:
            problems.add(
                i,
                DUPLICATE_EDGE,
                f"pin {p!r} is already on board {b!r} at row {table.rows[seen[p, b]]}",
            )
        else:
            seen[p, b] = i
    return pin_ids, board_ids


def _column(table: RawTable, name: str, values: Callable[[], list], keep: np.ndarray) -> pd.Series:
    """One kept column: text as an Arrow-backed `str` column, Arrow's own types as Arrow
    columns, anything else (CSV/JSONL values) as objects. `values()` gives the Python values,
    only called when the column cannot be taken from Arrow."""
    source = table.arrow
    if source is not None and name in source.column_names:
        column = source.column(name)
        if len(keep) < len(column):  # a compact copy of the kept rows, in the same pool
            column = pc.take(column, pa.array(keep), memory_pool=KEPT_POOL)
        if pa.types.is_string(column.type):  # pandas' str columns are large_string
            column = pc.cast(column, pa.large_string(), memory_pool=KEPT_POOL)
        if pa.types.is_large_string(column.type):
            return string_series(column)
        if not (pa.types.is_null(column.type) or name in STRING_COLUMNS or _is_binary(column)):
            # numbers, timestamps, lists: pandas' Arrow dtype, values as Arrow holds them
            return pd.Series(pd.arrays.ArrowExtensionArray(column), copy=False)
    values = values()
    kept = [values[i] for i in keep]
    if all(v is None or isinstance(v, str) for v in kept) and (
        name in STRING_COLUMNS or any(v is not None for v in kept)
    ):
        return string_series(pa.array(kept, pa.large_string(), memory_pool=KEPT_POOL))
    return pd.Series(kept, dtype=object)


def _is_binary(column: pa.ChunkedArray) -> bool:
    return pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)


def _frame(table: RawTable, kind: str, problems: _Problems, ids: dict[str, list]) -> pd.DataFrame:
    """The kept rows, ids normalised to text, optional columns added (as nulls) when absent."""
    mask = np.ones(len(table), dtype=bool)
    mask[list(problems)] = False
    keep = np.flatnonzero(mask)  # row positions kept: an array, not a list of ints
    data = {}
    for name in table.columns:
        if name in ids:  # normalised ids: text, never the raw ints
            data[name] = _column(
                RawTable(table.file, {}, table.rows, arrow=_text_only(table.arrow, name)),
                name,
                lambda name=name: ids[name],
                keep,
            )
        else:
            data[name] = _column(table, name, lambda name=name: table.columns[name], keep)
    for name in OPTIONAL[kind]:
        data.setdefault(name, string_series(pa.nulls(len(keep), pa.string())))
    return pd.DataFrame(data, copy=False)


def _text_only(source: pa.Table | None, name: str) -> pa.Table | None:
    """`source` when its column `name` is already text (then the normalised ids equal it)."""
    if source is None or name not in source.column_names:
        return None
    t = source.column(name).type
    return source if pa.types.is_string(t) or pa.types.is_large_string(t) else None


def _printable(value: object) -> str | None:
    """Ids go into rejects.jsonl, which is valid UTF-8 even when the id was not."""
    return (
        value.encode("utf-8", "backslashreplace").decode("utf-8")
        if isinstance(value, str)
        else None
    )


def _report_rows(
    table: RawTable, problems: _Problems, ids: Sequence[str | None] | dict[int, str | None]
) -> list[Reject]:
    found = [
        Reject(table.file, table.rows[i], _printable(ids[i]), *problems[i])
        for i in sorted(problems)
    ]
    return sorted(table.rejects + found, key=lambda r: r.row)


def validate_tables(
    pins: RawTable,
    boards: RawTable,
    edges: RawTable,
    *,
    image_root: Path,
    allow_absolute_paths: bool = False,
    image_check: Callable[[str], object] | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, pd.DataFrame], ValidationReport]:
    """Validate the three tables; return the good rows as DataFrames and the report.

    `image_check(path)` is run on every distinct (absolute, normalised) image path of an otherwise good pin (in
    threads); it raises `ImageError` for a bad image. None skips the file checks (the
    path-escape check always runs, it never touches the disk).
    """
    for kind, table in zip(TABLES, (pins, boards, edges), strict=True):
        table.require(REQUIRED[kind])
    bound_heap_growth(len(pins))  # catalog-sized arrays, freed: back to the kernel at scale
    report = ValidationReport(
        files={k: t.file for k, t in zip(TABLES, (pins, boards, edges), strict=True)}
    )
    frames = {}
    kept: dict[str, Known] = {}
    for kind, table, id_col, dup in (
        ("pins", pins, "pin_id", DUPLICATE_PIN),
        ("boards", boards, "board_id", DUPLICATE_BOARD),
    ):
        problems = _Problems()
        _check_utf8(table, problems, [id_col])
        ids = _entity_ids(table, id_col, dup, problems)
        _check_utf8(table, problems)
        image_only = _check_text(table, kind, problems)
        if kind == "pins":
            _check_images(
                table,
                problems,
                image_root=image_root,
                allow_absolute_paths=allow_absolute_paths,
                image_check=image_check,
                workers=workers,
                progress=progress,
            )
        # every id a row owns (even a rejected row) is known; only kept rows are usable
        kept[kind] = _owned(ids, problems)
        frames[kind] = _frame(table, kind, problems, {id_col: ids})
        report.good[table.file] = len(frames[kind])
        image_only = image_only[~np.isin(image_only, list(problems))]
        if len(image_only):
            report.warnings[(table.file, IMAGE_ONLY_PIN)] = len(image_only)
            report.image_only = [str(ids[int(i)]) for i in image_only[:IMAGE_ONLY_LISTED]]
        report.rejects += _report_rows(table, problems, ids)
        trim_heap()  # the hashes, masks and image checks' buffers: their pages back

    problems = _Problems()
    pin_ids, board_ids = _check_edges(edges, kept["pins"], kept["boards"], problems)
    frames["edges"] = _frame(edges, "edges", problems, {"pin_id": pin_ids, "board_id": board_ids})
    report.good[edges.file] = len(frames["edges"])
    edge_ids = {  # only the rejected rows name their edge
        i: f"{pin_ids[i]} -> {board_ids[i]}"
        if pin_ids[i] is not None and board_ids[i] is not None
        else None
        for i in problems
    }
    report.rejects += _report_rows(edges, problems, edge_ids)
    return frames, report
