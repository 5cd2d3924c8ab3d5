"""`catalog import`: CSV and JSONL tables plus an image folder become a valid catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pinclip.data import images, validate
from pinclip.data.catalog import CatalogError, read_catalog
from pinclip.data.importer import import_catalog


def source_images(kit, folder: Path) -> Path:
    for name in ("a.png", "sub/b.png", "c.png"):
        kit.png(folder / name, size=(6, 6))
    return folder


def write_csv(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


BOARDS_CSV = "board_id,title,description\nb1,Board one,\nb2,Board two,second\n"
EDGES_CSV = "pin_id,board_id\na,b1\nb,b1\nc,b2\nbad,b2\n"


def test_import_csv(tmp_path, kit):
    src = source_images(kit, tmp_path / "src")
    pins = write_csv(
        tmp_path / "pins.csv",
        b"pin_id,image,title,description\n"
        b"a,a.png,Apple,\n"
        b'b,sub/b.png,"Bee, with a comma",buzz\n'
        b"c,c.png,Cat,\n"
        b"bad,c.png,caf\xe9 in latin-1,\n"  # line 5: invalid UTF-8
        b"d,missing.png,Dog,\n"  # line 6: missing image
        b"e,a.png,too,many,fields\n",  # line 7: malformed
    )
    out, report = import_catalog(
        tmp_path / "out",
        pins=pins,
        boards=write_csv(tmp_path / "boards.csv", BOARDS_CSV),
        edges=write_csv(tmp_path / "edges.csv", EDGES_CSV),
        images=src,
        meta={"license": "CC0"},
    )
    assert [(r.file, r.row, r.reason) for r in report.rejects] == [
        ("pins.csv", 5, validate.INVALID_UTF8),
        ("pins.csv", 6, images.MISSING_IMAGE),
        ("pins.csv", 7, validate.MALFORMED_ROW),
        ("edges.csv", 5, validate.EDGE_REJECTED_PIN),
    ]
    assert report.good == {"pins.csv": 3, "boards.csv": 2, "edges.csv": 3}
    cat, check = read_catalog(out)
    assert check.ok
    assert list(cat.pins["image"]) == ["images/a.png", "images/sub/b.png", "images/c.png"]
    assert list(cat.pins["title"]) == ["Apple", "Bee, with a comma", "Cat"]
    # empty CSV cell -> null (read back as pandas' missing value of an Arrow text column), never ""
    assert pd.isna(cat.pins["description"][0])
    assert (out / "images/sub/b.png").read_bytes() == (src / "sub/b.png").read_bytes()
    assert not (out / "images/missing.png").exists()
    lines = (out / "rejects.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["id"] == "bad"
    info = json.loads((out / "catalog.json").read_text())
    assert info["name"] == "out" and info["license"] == "CC0" and info["counts"]["pins"] == 3


def test_import_jsonl(tmp_path, kit):
    src = source_images(kit, tmp_path / "src")
    pins = write_jsonl(
        tmp_path / "pins.jsonl",
        [
            {"pin_id": 1, "image": "a.png", "title": "one", "tags": ["x"]},  # int id -> "1"
            {"pin_id": "2", "image": "sub/b.png", "description": "two"},
            {"pin_id": "3", "image": "c.png", "title": 42},  # line 3: non-string title
            b'{"pin_id": "4", "image": "c.png", "title": "caf\xe9"}',  # line 4: invalid UTF-8
            b"{not json",  # line 5
            {"pin_id": "6", "image": "../a.png", "title": "escape"},  # line 6
            {"pin_id": "1", "image": "c.png", "title": "dup"},  # line 7
        ],
    )
    boards = write_jsonl(
        tmp_path / "boards.jsonl",
        [{"board_id": "b1", "title": "B"}, {"board_id": "b2", "title": ""}],
    )
    edges = write_jsonl(
        tmp_path / "edges.jsonl",
        [{"pin_id": "1", "board_id": "b1"}, {"pin_id": 2, "board_id": "b1"}],
    )
    out, report = import_catalog(
        tmp_path / "out", pins=pins, boards=boards, edges=edges, images=src
    )
    assert [(r.file, r.row, r.reason) for r in report.rejects] == [
        ("pins.jsonl", 3, validate.NON_STRING_TEXT),
        ("pins.jsonl", 4, validate.INVALID_UTF8),
        ("pins.jsonl", 5, validate.INVALID_JSON),
        ("pins.jsonl", 6, images.IMAGE_PATH_ESCAPES),
        ("pins.jsonl", 7, validate.DUPLICATE_PIN),
        ("boards.jsonl", 2, validate.EMPTY_TEXT),
    ]
    cat, check = read_catalog(out)
    assert check.ok
    assert list(cat.pins["pin_id"]) == ["1", "2"]
    tags = cat.pins["tags"]  # extra columns are kept (Arrow-backed: a null reads as pd.NA)
    assert tags[0] == ["x"] and pd.isna(tags[1])
    assert list(cat.edges["pin_id"]) == ["1", "2"]
    assert not (out / "a.png").exists() and sorted(
        p.name for p in (out / "images").rglob("*.png")
    ) == ["a.png", "b.png"]


def test_import_link_shares_the_file(tmp_path, kit):
    src = source_images(kit, tmp_path / "src")
    pins = write_csv(tmp_path / "pins.csv", "pin_id,image,title\na,a.png,A\n")
    edges = write_csv(tmp_path / "edges.csv", "pin_id,board_id\na,b1\n")
    out, report = import_catalog(
        tmp_path / "out",
        pins=pins,
        boards=write_csv(tmp_path / "boards.csv", BOARDS_CSV),
        edges=edges,
        images=src,
        link=True,
    )
    assert report.ok
    assert (out / "images/a.png").stat().st_ino == (src / "a.png").stat().st_ino


def test_import_missing_column_names_file_and_column(tmp_path, kit):
    pins = write_csv(tmp_path / "pins.csv", "pin_id,title\na,A\n")
    with pytest.raises(CatalogError, match=r"pins\.csv: missing required column 'image'"):
        import_catalog(
            tmp_path / "out",
            pins=pins,
            boards=write_csv(tmp_path / "boards.csv", BOARDS_CSV),
            edges=write_csv(tmp_path / "edges.csv", EDGES_CSV),
        )


def test_import_refuses_non_empty_out(tmp_path, kit):
    src = source_images(kit, tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    tables = dict(
        pins=write_csv(tmp_path / "pins.csv", "pin_id,image,title\na,a.png,A\n"),
        boards=write_csv(tmp_path / "boards.csv", BOARDS_CSV),
        edges=write_csv(tmp_path / "edges.csv", "pin_id,board_id\na,b1\n"),
        images=src,
    )
    with pytest.raises(CatalogError, match="not empty"):
        import_catalog(tmp_path / "out", **tables)
    out, report = import_catalog(tmp_path / "out", overwrite=True, **tables)
    assert report.ok and (out / "keep.txt").exists()


def test_unknown_table_format(tmp_path):
    (tmp_path / "pins.xlsx").write_text("x")
    with pytest.raises(CatalogError, match="unknown table format"):
        import_catalog(
            tmp_path / "out",
            pins=tmp_path / "pins.xlsx",
            boards=tmp_path / "pins.xlsx",
            edges=tmp_path / "pins.xlsx",
        )


def test_import_absolute_paths_need_the_flag(tmp_path, kit):
    outside = kit.png(tmp_path / "far" / "x.png")
    pins = write_csv(tmp_path / "pins.csv", f"pin_id,image,title\na,a.png,A\nx,{outside},X\n")
    tables = dict(
        pins=pins,
        boards=write_csv(tmp_path / "boards.csv", BOARDS_CSV),
        edges=write_csv(tmp_path / "edges.csv", "pin_id,board_id\na,b1\nx,b1\n"),
        images=source_images(kit, tmp_path / "src"),
    )
    _, report = import_catalog(tmp_path / "strict", **tables)
    assert [(r.row, r.reason) for r in report.rejects] == [
        (3, images.IMAGE_PATH_ESCAPES),
        (3, validate.EDGE_REJECTED_PIN),
    ]
    out, report = import_catalog(tmp_path / "loose", allow_absolute_paths=True, **tables)
    assert report.ok
    cat, check = read_catalog(out)  # the copy lives inside the catalog: no flag needed any more
    assert check.ok and cat.pins["image"][1].startswith("images/external/")


def test_import_csv_with_bom(tmp_path, kit):
    src = source_images(kit, tmp_path / "src")
    pins = write_csv(tmp_path / "pins.csv", "\ufeffpin_id,image,title\na,a.png,A\n".encode("utf-8"))
    out, report = import_catalog(
        tmp_path / "out",
        pins=pins,
        boards=write_csv(tmp_path / "boards.csv", BOARDS_CSV),
        edges=write_csv(tmp_path / "edges.csv", "pin_id,board_id\na,b1\n"),
        images=src,
    )
    assert report.ok and report.good["pins.csv"] == 1
