"""Deterministic parquet output shared by the builders.

Whole tables go through `pinclip.data.catalog.write_catalog`; the streaming `TableStream` is for builders that cannot hold a whole table in memory (synthetic at 10^7 pins).
It uses the catalog's parquet settings, so the same rows give byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from pinclip.atomic import atomic_open, atomic_write_text
from pinclip.data.catalog import PARQUET_OPTIONS
from pinclip.errors import PinclipError


class OutputNotEmptyError(PinclipError, FileExistsError):
    """A builder's output directory already holds files and overwrite was not asked for."""


def fresh_output_dir(out: str | Path, overwrite: bool) -> Path:
    """The builder's output directory, empty: refuse a non-empty one unless `overwrite`."""
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise OutputNotEmptyError(
                f"{root} is not empty; choose a new directory or pass --overwrite"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_json(path: Path, obj: dict) -> None:
    """Write JSON with sorted keys so the bytes only depend on the content."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


class TableStream:
    """Append record batches to one parquet file, one row group per chunk (bounded memory)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._file = contextlib.ExitStack()  # the atomic file: committed on close, else dropped
        fh = self._file.enter_context(atomic_open(self.path, "wb"))
        self._writer = pq.ParquetWriter(fh, schema, **PARQUET_OPTIONS)

    def write(self, columns: dict) -> None:
        table = pa.Table.from_pydict(columns, schema=self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        self._file.close()

    def __enter__(self) -> TableStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
            self._file.__exit__(exc_type, exc, tb)  # removes the temp file, keeps the old one
