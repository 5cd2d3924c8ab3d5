"""Deterministic parquet output shared by the builders.

Whole tables go through `pinclip.data.catalog.write_catalog`; the streaming `TableStream` is for builders that cannot hold a whole table in memory (synthetic at 10^7 pins).
It uses the catalog's parquet settings, so the same rows give byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from pinclip.data.catalog import PARQUET_OPTIONS


def write_json(path: Path, obj: dict) -> None:
    """Write JSON with sorted keys so the bytes only depend on the content."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


class TableStream:
    """Append record batches to one parquet file, one row group per chunk (bounded memory)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._writer = pq.ParquetWriter(self._tmp, schema, **PARQUET_OPTIONS)

    def write(self, columns: dict) -> None:
        table = pa.Table.from_pydict(columns, schema=self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        self._tmp.replace(self.path)

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
            self._tmp.unlink(missing_ok=True)
