"""Large tables are read from a memory-mapped Arrow copy: the same rows, no process memory."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinclip.data import catalog as catalog_module
from pinclip.data.catalog import FILES, MAPPED_DIR, read_catalog


@pytest.fixture
def syn(tmp_path, tiny_catalog):
    root = tmp_path / "syn"
    shutil.copytree(tiny_catalog, root)
    return root


def _frames(root, mapped: bool, monkeypatch) -> dict[str, pd.DataFrame]:
    monkeypatch.setattr(catalog_module, "MAPPED_MIN_ROWS", 1 if mapped else 10**12)
    catalog, _ = read_catalog(root, check_images=False)
    return {"pins": catalog.pins, "boards": catalog.boards, "edges": catalog.edges}


def test_mapped_read_gives_the_same_rows_and_types(syn, monkeypatch):
    # a rejected pin (duplicate id) and its edges make the kept rows a compact copy
    pins = pq.read_table(syn / FILES["pins"]).to_pandas()
    pins = pd.concat([pins, pins.iloc[[3]]], ignore_index=True)
    pins.to_parquet(syn / FILES["pins"], index=False)
    in_memory = _frames(syn, mapped=False, monkeypatch=monkeypatch)
    assert not (syn / MAPPED_DIR).exists()
    mapped = _frames(syn, mapped=True, monkeypatch=monkeypatch)
    assert sorted(p.name for p in (syn / MAPPED_DIR).iterdir()) == sorted(
        f"{name}.arrow" for name in FILES.values()
    )
    for kind in FILES:
        pd.testing.assert_frame_equal(mapped[kind], in_memory[kind])


def test_mapped_columns_take_no_process_memory(syn, monkeypatch):
    path = syn / FILES["edges"]
    big = pa.table({"pin_id": [f"p{i:07d}" for i in range(200_000)], "board_id": ["b"] * 200_000})
    pq.write_table(big, path)
    monkeypatch.setattr(catalog_module, "MAPPED_MIN_ROWS", 1)
    catalog_module._read_kept(path)  # makes the copy
    before = pa.total_allocated_bytes()
    table = catalog_module._read_kept(path)
    assert table.column("pin_id").to_pylist()[-1] == "p0199999"
    assert pa.total_allocated_bytes() - before < 2**20  # in memory: > 2.5 MiB of ids
    monkeypatch.setattr(catalog_module, "MAPPED_MIN_ROWS", 10**12)
    before = pa.total_allocated_bytes()
    kept = catalog_module._read_kept(path)
    assert pa.total_allocated_bytes() - before > 2**21
    del kept


def test_a_changed_parquet_file_remakes_its_copy(syn, monkeypatch):
    monkeypatch.setattr(catalog_module, "MAPPED_MIN_ROWS", 1)
    path = syn / FILES["boards"]
    first = catalog_module._read_kept(path)
    copy = syn / MAPPED_DIR / f"{path.name}.arrow"
    made = copy.stat().st_mtime_ns
    catalog_module._read_kept(path)
    assert copy.stat().st_mtime_ns == made  # unchanged source: the copy is reused
    boards = first.to_pandas()
    boards.loc[0, "title"] = "renamed board"
    boards.to_parquet(path, index=False)
    assert catalog_module._read_kept(path).column("title")[0].as_py() == "renamed board"


def test_an_unwritable_catalog_is_read_into_memory(syn, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(catalog_module, "MAPPED_MIN_ROWS", 1)
    monkeypatch.setattr(catalog_module, "write_with", refuse)
    table = catalog_module._read_kept(syn / FILES["pins"])
    assert table.num_rows == 240
    assert not list((syn / MAPPED_DIR).glob("*.arrow"))


def test_a_copy_made_for_other_types_is_remade(syn, monkeypatch):
    monkeypatch.setattr(catalog_module, "MAPPED_MIN_ROWS", 1)
    path = syn / FILES["pins"]
    assert catalog_module._read_kept(path).schema.field("title").type == pa.large_string()
    as_written = catalog_module.mapped_table(path)  # the file's own types this time
    assert as_written.schema.field("title").type == pa.string()
    assert (
        as_written.column("pin_id").to_pylist() == pq.read_table(path).column("pin_id").to_pylist()
    )
