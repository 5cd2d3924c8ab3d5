"""Tiny catalogs built by the tests themselves: three good pins, two boards, three edges."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

GOOD_PINS = [
    {
        "pin_id": f"p{i}",
        "image": f"images/p{i}.png",
        "title": f"pin {i}",
        "description": "a pin",
        "kind": "organic",
    }
    for i in (1, 2, 3)
]
GOOD_BOARDS = [
    {"board_id": "b1", "title": "Board one", "description": "first"},
    {"board_id": "b2", "title": "Board two", "description": None},
]
GOOD_EDGES = [
    {"pin_id": "p1", "board_id": "b1"},
    {"pin_id": "p2", "board_id": "b1"},
    {"pin_id": "p3", "board_id": "b2"},
]


def make_png(
    path: Path, size: tuple[int, int] = (8, 8), color=(200, 30, 30), mode: str = "RGB"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format="PNG")
    return path


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose header declares a gigantic canvas (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    body = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def write_parquet(path: Path, rows: list[dict] | pa.Table) -> None:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
    pq.write_table(table, path)


def build_catalog(
    root: Path, *, pins=(), boards=(), edges=(), pin_table: pa.Table | None = None
) -> Path:
    """Write the good rows plus the given extra (bad) rows; images for the good pins only."""
    root.mkdir(parents=True, exist_ok=True)
    for i in (1, 2, 3):
        make_png(root / "images" / f"p{i}.png", color=(60 * i, 20, 20))
    write_parquet(
        root / "pins.parquet", pin_table if pin_table is not None else GOOD_PINS + list(pins)
    )
    write_parquet(root / "boards.parquet", GOOD_BOARDS + list(boards))
    write_parquet(root / "pin_board.parquet", GOOD_EDGES + list(edges))
    return root


def assert_good_rows_kept(catalog) -> None:
    assert {"p1", "p2", "p3"} <= set(catalog.pins["pin_id"])
    assert {"b1", "b2"} <= set(catalog.boards["board_id"])
    kept = set(zip(catalog.edges["pin_id"], catalog.edges["board_id"], strict=True))
    assert {(e["pin_id"], e["board_id"]) for e in GOOD_EDGES} <= kept


def only_reject(report):
    assert len(report.rejects) == 1, report.rejects
    return report.rejects[0]


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above (pytest's importlib mode does not let test modules import conftest)."""
    return SimpleNamespace(
        png=make_png,
        bomb_png=bomb_png,
        parquet=write_parquet,
        build=build_catalog,
        assert_good_rows_kept=assert_good_rows_kept,
        only_reject=only_reject,
        good_pins=GOOD_PINS,
        good_boards=GOOD_BOARDS,
        good_edges=GOOD_EDGES,
    )
