"""Reader, validator and writer of the catalog: one test per bad-input kind, plus determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFile

from pinclip.data import images, validate
from pinclip.data.catalog import (
    PINS_FILE,
    CatalogError,
    TextColumn,
    check_catalog,
    pin_text,
    read_catalog,
    write_catalog,
)
from pinclip.graph import PinBoardGraph


def bad_pin(pin_id: str, image: str, **fields) -> dict:
    return {
        "pin_id": pin_id,
        "image": image,
        "title": "bad pin",
        "description": "x",
        "kind": "organic",
        **fields,
    }


def test_good_catalog_has_no_rejects(tmp_path, kit):
    cat, report = read_catalog(kit.build(tmp_path / "c"))
    assert report.ok
    assert report.good == {"pins.parquet": 3, "boards.parquet": 2, "pin_board.parquet": 3}
    assert list(cat.pins["pin_id"]) == ["p1", "p2", "p3"]
    assert cat.load_image(cat.pins["image"][0]).size == (8, 8)


def test_missing_image_file(tmp_path, kit):
    root = kit.build(tmp_path / "c", pins=[bad_pin("p4", "images/nope.png")])
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.file, r.row, r.id, r.reason) == (PINS_FILE, 3, "p4", images.MISSING_IMAGE)
    kit.assert_good_rows_kept(cat)
    assert "p4" not in set(cat.pins["pin_id"])


def test_truncated_image(tmp_path, kit):
    root = kit.build(tmp_path / "c", pins=[bad_pin("p4", "images/cut.png")])
    full = kit.png(tmp_path / "full.png", size=(64, 64), color=(1, 2, 3)).read_bytes()
    (root / "images/cut.png").write_bytes(full[: len(full) // 2])
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.row, r.id, r.reason) == (3, "p4", images.TRUNCATED_IMAGE)
    kit.assert_good_rows_kept(cat)


def test_undecodable_image(tmp_path, kit):
    root = kit.build(tmp_path / "c", pins=[bad_pin("p4", "images/text.png")])
    (root / "images/text.png").write_text("this is not an image")
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.row, r.id, r.reason) == (3, "p4", images.UNDECODABLE_IMAGE)
    kit.assert_good_rows_kept(cat)


def test_image_over_pixel_limit(tmp_path, kit):
    root = kit.build(tmp_path / "c", pins=[bad_pin("p4", "images/big.png")])
    kit.png(root / "images/big.png", size=(40, 40))
    cat, report = read_catalog(root, max_pixels=1000)  # the 8x8 good images are far below
    r = kit.only_reject(report)
    assert (r.row, r.id, r.reason) == (3, "p4", images.IMAGE_TOO_LARGE)
    assert "40x40" in r.detail
    kit.assert_good_rows_kept(cat)


def test_decompression_bomb_is_never_decoded(tmp_path, kit, monkeypatch):
    root = kit.build(
        tmp_path / "c", pins=[bad_pin("p4", "images/bomb.png"), bad_pin("p5", "images/wide.png")]
    )
    kit.bomb_png(root / "images/bomb.png")  # 10^10 pixels: over Pillow's own hard limit
    kit.bomb_png(root / "images/wide.png", width=9_000, height=9_000)  # 81 Mpx: over our limit only
    decoded = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or original(self)
    )
    cat, report = read_catalog(root)
    assert [(r.id, r.reason) for r in report.rejects] == [
        ("p4", images.IMAGE_TOO_LARGE),
        ("p5", images.IMAGE_TOO_LARGE),
    ]
    assert decoded and all(w * h <= 64 for w, h in decoded)  # only the 8x8 good images were decoded
    kit.assert_good_rows_kept(cat)


@pytest.mark.parametrize("hashes", ["real", "all colliding"])
def test_duplicate_pin_id_keeps_first(tmp_path, kit, monkeypatch, hashes):
    if hashes == "all colliding":  # ids are told apart by their text, never by a hash alone
        monkeypatch.setattr(validate, "hash_ids", lambda ids: np.zeros(len(ids), np.uint64))
    root = kit.build(tmp_path / "c", pins=[bad_pin("p1", "images/p2.png", title="second p1")])
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.row, r.id, r.reason) == (3, "p1", validate.DUPLICATE_PIN)
    assert "row 0" in r.detail
    kit.assert_good_rows_kept(cat)
    assert list(cat.pins.loc[cat.pins["pin_id"] == "p1", "title"]) == ["pin 1"]


def test_duplicate_board_id_keeps_first(tmp_path, kit):
    root = kit.build(
        tmp_path / "c", boards=[{"board_id": "b2", "title": "again", "description": None}]
    )
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.file, r.row, r.id, r.reason) == ("boards.parquet", 2, "b2", validate.DUPLICATE_BOARD)
    assert list(cat.boards["title"]) == ["Board one", "Board two"]
    kit.assert_good_rows_kept(cat)


def test_edge_to_unknown_pin(tmp_path, kit):
    root = kit.build(tmp_path / "c", edges=[{"pin_id": "ghost", "board_id": "b1"}])
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.file, r.row, r.id, r.reason) == (
        "pin_board.parquet",
        3,
        "ghost -> b1",
        validate.EDGE_UNKNOWN_PIN,
    )
    kit.assert_good_rows_kept(cat)


def test_edge_to_unknown_board(tmp_path, kit):
    root = kit.build(tmp_path / "c", edges=[{"pin_id": "p1", "board_id": "nowhere"}])
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.file, r.row, r.reason) == ("pin_board.parquet", 3, validate.EDGE_UNKNOWN_BOARD)
    kit.assert_good_rows_kept(cat)


def test_edge_to_rejected_pin_is_counted(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        pins=[bad_pin("p4", "images/nope.png")],
        edges=[{"pin_id": "p4", "board_id": "b1"}, {"pin_id": "p4", "board_id": "b2"}],
    )
    cat, report = read_catalog(root)
    assert [(r.file, r.row, r.reason) for r in report.rejects] == [
        (PINS_FILE, 3, images.MISSING_IMAGE),
        ("pin_board.parquet", 3, validate.EDGE_REJECTED_PIN),
        ("pin_board.parquet", 4, validate.EDGE_REJECTED_PIN),
    ]
    assert report.by_reason()[("pin_board.parquet", validate.EDGE_REJECTED_PIN)] == 2
    kit.assert_good_rows_kept(cat)


def test_edge_to_rejected_board(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        boards=[{"board_id": "b3", "title": "  ", "description": "no title"}],
        edges=[{"pin_id": "p1", "board_id": "b3"}],
    )
    cat, report = read_catalog(root)
    assert [(r.file, r.reason) for r in report.rejects] == [
        ("boards.parquet", validate.EMPTY_TEXT),
        ("pin_board.parquet", validate.EDGE_REJECTED_BOARD),
    ]
    kit.assert_good_rows_kept(cat)


def test_duplicate_edge(tmp_path, kit):
    root = kit.build(tmp_path / "c", edges=[{"pin_id": "p1", "board_id": "b1"}])
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.file, r.row, r.reason) == ("pin_board.parquet", 3, validate.DUPLICATE_EDGE)
    assert len(cat.edges) == 3


def test_pin_with_no_text_is_an_image_only_pin_counted_as_a_warning(tmp_path, kit):
    root = kit.build(
        tmp_path / "c", pins=[bad_pin("p4", "images/p1.png", title=None, description="   ")]
    )
    cat, report = read_catalog(root)
    assert report.ok and "p4" in set(cat.pins["pin_id"])
    assert report.warnings == {("pins.parquet", validate.IMAGE_ONLY_PIN): 1}
    assert cat.has_text().tolist() == [pid != "p4" for pid in cat.pins["pin_id"]]


def test_pin_with_only_a_description_is_fine(tmp_path, kit):
    root = kit.build(
        tmp_path / "c", pins=[bad_pin("p4", "images/p1.png", title=None, description="only this")]
    )
    cat, report = read_catalog(root)
    assert report.ok and "p4" in set(cat.pins["pin_id"])


def test_board_without_title(tmp_path, kit):
    root = kit.build(
        tmp_path / "c", boards=[{"board_id": "b3", "title": None, "description": "text"}]
    )
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.file, r.row, r.id, r.reason) == ("boards.parquet", 2, "b3", validate.EMPTY_TEXT)
    kit.assert_good_rows_kept(cat)


def test_non_string_text_in_parquet(tmp_path, kit):
    pins = pa.Table.from_pylist(kit.good_pins).append_column(
        "link", pa.array([None, None, None], pa.string())
    )
    pins = pa.concat_tables(
        [
            pins,
            pa.Table.from_pylist([bad_pin("p4", "images/p1.png", link=None)], schema=pins.schema),
        ]
    )
    # `kind` typed as a number column: every non-null value is non-text
    kinds = pa.array([None, None, None, 7], pa.int64())
    pins = pins.set_column(pins.schema.get_field_index("kind"), "kind", kinds)
    cat, report = read_catalog(kit.build(tmp_path / "c", pin_table=pins))
    r = kit.only_reject(report)
    assert (r.row, r.id, r.reason) == (3, "p4", validate.NON_STRING_TEXT)
    assert "'kind'" in r.detail
    kit.assert_good_rows_kept(cat)


def test_invalid_utf8_in_binary_parquet_column(tmp_path, kit):
    rows = [*kit.good_pins, bad_pin("p4", "images/p1.png")]
    table = pa.Table.from_pylist(rows)
    titles = pa.array([b"pin 1", b"pin 2", b"pin 3", b"caf\xe9 latin-1"], pa.binary())
    table = table.set_column(table.schema.get_field_index("title"), "title", titles)
    cat, report = read_catalog(kit.build(tmp_path / "c", pin_table=table))
    r = kit.only_reject(report)
    assert (r.row, r.id, r.reason) == (3, "p4", validate.INVALID_UTF8)
    assert "'title'" in r.detail
    kit.assert_good_rows_kept(cat)
    assert list(cat.pins["title"]) == ["pin 1", "pin 2", "pin 3"]  # binary decoded to text


@pytest.mark.parametrize("missing", ["pin_id", "image"])
def test_missing_required_column(tmp_path, kit, missing):
    root = kit.build(tmp_path / "c")
    kit.parquet(
        root / PINS_FILE, [{k: v for k, v in p.items() if k != missing} for p in kit.good_pins]
    )
    with pytest.raises(CatalogError, match=rf"pins\.parquet: missing required column '{missing}'"):
        read_catalog(root)


def test_missing_table_file(tmp_path, kit):
    root = kit.build(tmp_path / "c")
    (root / "pin_board.parquet").unlink()
    with pytest.raises(CatalogError, match="pin_board.parquet: file not found"):
        read_catalog(root)


def test_image_path_escaping_catalog_is_never_opened(tmp_path, kit, monkeypatch):
    secret = kit.png(tmp_path / "secret.png")  # exists and is valid: only the path is wrong
    root = kit.build(
        tmp_path / "c",
        pins=[bad_pin("p4", "../secret.png"), bad_pin("p5", "images/../../secret.png")],
    )
    opened = []
    original = Image.open
    monkeypatch.setattr(
        Image, "open", lambda fp, *a, **k: opened.append(Path(fp)) or original(fp, *a, **k)
    )
    cat, report = read_catalog(root)
    assert [(r.row, r.reason) for r in report.rejects] == [
        (3, images.IMAGE_PATH_ESCAPES),
        (4, images.IMAGE_PATH_ESCAPES),
    ]
    assert secret not in opened and len(opened) == 3
    kit.assert_good_rows_kept(cat)


def test_absolute_path_outside_needs_the_flag(tmp_path, kit):
    outside = kit.png(tmp_path / "elsewhere" / "x.png")
    root = kit.build(tmp_path / "c", pins=[bad_pin("p4", str(outside))])
    cat, report = read_catalog(root)
    r = kit.only_reject(report)
    assert (r.row, r.reason) == (3, images.IMAGE_PATH_ESCAPES)
    assert "--allow-absolute-paths" in r.detail
    cat, report = read_catalog(root, allow_absolute_paths=True)
    assert report.ok and cat.image_path(str(outside)) == outside


def test_absolute_path_inside_catalog_is_fine(tmp_path, kit):
    root = kit.build(tmp_path / "c")
    kit.build(root, pins=[bad_pin("p4", str((root / "images/p1.png").absolute()))])
    assert read_catalog(root)[1].ok


def test_catalog_image_path_refuses_escape(tmp_path, kit):
    cat, _ = read_catalog(kit.build(tmp_path / "c"))
    assert cat.image_path("images/p1.png") == (tmp_path / "c/images/p1.png").absolute()
    with pytest.raises(images.ImageError, match="outside"):
        cat.image_path("../../etc/passwd")


def test_missing_image_path_and_invalid_id_and_kind(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        pins=[
            bad_pin("p4", None),
            bad_pin("", "images/p1.png"),
            bad_pin("p6", "images/p1.png", kind="promoted"),
        ],
    )
    cat, report = read_catalog(root)
    assert [(r.row, r.reason) for r in report.rejects] == [
        (3, images.MISSING_IMAGE_PATH),
        (4, validate.INVALID_ID),
        (5, validate.INVALID_KIND),
    ]
    kit.assert_good_rows_kept(cat)


def test_check_writes_rejects_jsonl(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        pins=[bad_pin("p4", "images/nope.png")],
        edges=[{"pin_id": "p4", "board_id": "b2"}],
    )
    report = check_catalog(root, check_images=True)
    lines = [json.loads(line) for line in (root / "rejects.jsonl").read_text().splitlines()]
    assert [(x["file"], x["row"], x["id"], x["reason"]) for x in lines] == [
        (PINS_FILE, 3, "p4", images.MISSING_IMAGE),
        ("pin_board.parquet", 3, "p4 -> b2", validate.EDGE_REJECTED_PIN),
    ]
    assert all(x["detail"] for x in lines)
    assert report.good == {"pins.parquet": 3, "boards.parquet": 2, "pin_board.parquet": 3}
    elsewhere = tmp_path / "out" / "r.jsonl"
    check_catalog(root, rejects=elsewhere)
    assert elsewhere.read_text() == (root / "rejects.jsonl").read_text()


def test_check_files_in_parallel_finds_every_failure(tmp_path, kit):
    paths = []
    for i in range(100):
        path = tmp_path / f"{i}.png"
        if i % 7:
            kit.png(path, size=(4, 4))
        paths.append(path)
    failures = images.check_files(paths, images.check_image, workers=2, chunk=3)
    assert sorted(failures) == [i for i in range(100) if i % 7 == 0]
    assert {e.reason for e in failures.values()} == {images.MISSING_IMAGE}


def test_load_image_composites_transparency_on_white(tmp_path, kit):
    path = kit.png(tmp_path / "a.png", size=(5, 3), color=(255, 0, 0, 0), mode="RGBA")
    img = images.load_image(path)
    assert img.mode == "RGB" and img.size == (5, 3)
    assert img.getpixel((0, 0)) == (255, 255, 255)


def _frames():
    pins = pd.DataFrame(
        {
            "pin_id": ["a", "b", "c"],
            "image": ["images/a.png", "images/b.png", "images/c.png"],
            "title": ["A", None, "C"],
            "description": [None, "bee", None],
            "kind": ["organic", "ad", "organic"],
            "group": ["x", "y", "x"],
        }
    )
    boards = pd.DataFrame(
        {"board_id": ["b"], "title": ["B"], "description": [None], "kind": ["curated"]}
    )
    edges = pd.DataFrame({"pin_id": ["a", "b", "c"], "board_id": ["b", "b", "b"]}, index=[7, 8, 9])
    return pins, boards, edges


def test_write_is_byte_identical_and_atomic(tmp_path):
    meta = {
        "name": "t",
        "version": "1",
        "license": "CC0",
        "attribution": "me",
        "build": {"seed": 0},
    }
    first = write_catalog(tmp_path / "one", *_frames(), meta)
    second = write_catalog(tmp_path / "two", *_frames(), meta)
    names = sorted(p.name for p in first.iterdir())
    assert names == [
        "boards.parquet",
        "catalog.json",
        "pin_board.parquet",
        "pins.parquet",
    ]  # no temp files
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    schema = pq.read_schema(first / "pin_board.parquet")
    assert not schema.metadata or b"pandas" not in schema.metadata
    assert schema.names == ["pin_id", "board_id"]  # the DataFrame index is not written
    assert pq.read_schema(first / "boards.parquet").field("description").type == pa.string()
    info = json.loads((first / "catalog.json").read_text())
    assert info["counts"] == {
        "pins": 3,
        "boards": 1,
        "edges": 3,
        "curated_boards": 1,
        "user_boards": 0,
    }
    assert info["license"] == "CC0"


def test_written_catalog_reads_back(tmp_path, kit):
    pins, boards, edges = _frames()
    root = write_catalog(tmp_path / "c", pins, boards, edges, {"name": "t"})
    for image in pins["image"]:
        kit.png(root / image)
    cat, report = read_catalog(root)
    assert report.ok
    assert list(cat.pins.columns) == list(pins.columns) + ["link", "created_at"]
    assert list(cat.pins["group"]) == ["x", "y", "x"]
    assert cat.meta["name"] == "t"


def test_write_requires_columns(tmp_path):
    pins, boards, edges = _frames()
    with pytest.raises(CatalogError, match="'image'"):
        write_catalog(tmp_path, pins.drop(columns="image"), boards, edges)


def test_write_types_text_as_string(tmp_path):
    pins, boards, edges = _frames()
    pins["pin_id"] = [1, 2, 3]
    pins["link"] = pd.Series([None] * 3, dtype=object)
    root = write_catalog(tmp_path, pins, boards, edges)
    schema = pq.read_schema(root / PINS_FILE)
    assert {schema.field(c).type for c in ("pin_id", "title", "link", "group")} == {pa.string()}


def test_catalog_is_read_as_arrow_never_python_objects(tmp_path, kit):
    """Every column of a parquet catalog is Arrow-backed; missing text stays missing."""
    pins, boards, edges = _frames()
    pins["created_at"] = pd.to_datetime(["2024-01-01", None, "2024-01-03"], utc=True)
    root = write_catalog(tmp_path / "c", pins, boards, edges, {"name": "t"})
    for image in pins["image"]:
        kit.png(root / image)
    cat, report = read_catalog(root)
    assert report.ok
    for table in (cat.pins, cat.boards, cat.edges):
        objects = [c for c in table.columns if table[c].dtype == object]
        assert not objects, f"object columns: {objects}"
        for c in table.columns:  # pandas' str columns here hold pyarrow arrays
            assert pa.array(table[c].array, from_pandas=True) is not None
    assert pd.isna(cat.pins["title"][1]) and pd.isna(cat.pins["description"][0])
    assert pd.isna(cat.pins["created_at"][1]) and cat.pins["created_at"][2].day == 3
    assert isinstance(cat.column("pins", "title"), pa.Array)
    graph = PinBoardGraph.from_catalog(cat)
    assert graph.pin_ids.dtype != object and list(graph.pin_ids) == ["a", "b", "c"]


def test_texts_are_a_text_column_with_pin_text_rules(tmp_path, kit):
    pins, boards, edges = _frames()
    pins["title"] = ["A", None, "  "]
    pins["description"] = ["...", "bee. ", None]
    root = write_catalog(tmp_path / "c", pins, boards, edges, {"name": "t"})
    for image in pins["image"]:
        kit.png(root / image)
    cat, _ = read_catalog(root)
    texts = cat.texts()
    expected = [pin_text(t, d) for t, d in zip(pins["title"], pins["description"], strict=True)]
    assert isinstance(texts, TextColumn) and texts == expected == ["A", "bee", "  "]
    assert [texts[i] for i in range(3)] == expected and texts[-1] == "  "
    assert texts[1:] == expected[1:] and texts[[2, 0]] == ["  ", "A"]
    assert texts[pd.Series([True, False, True]).to_numpy()] == ["A", "  "]
    with pytest.raises(IndexError):
        texts[3]
    assert cat.has_text().tolist() == [True, True, False]  # blank title, no description


def test_validation_makes_no_python_list_of_an_arrow_text_column(tmp_path, kit):
    """Parquet text columns are checked over the Arrow arrays (image paths a batch at a time):
    none becomes a Python list, ~60-100 MB of objects per column at 10^6 pins."""
    from pinclip.data.catalog import read_parquet_table
    from pinclip.data.validate import validate_tables

    root = kit.build(tmp_path / "c")
    tables = [read_parquet_table(root / f) for f in ("pins.parquet", "boards.parquet")]
    tables.append(read_parquet_table(root / "pin_board.parquet"))
    frames, report = validate_tables(*tables, image_root=root)
    assert report.ok and len(frames["pins"]) == 3
    pins, boards, edges = (set(t.columns._lists) for t in tables)
    assert pins == boards == edges == set()


@pytest.mark.parametrize("window", [1, 2, 3, 1 << 16])
def test_images_checked_in_windows_give_the_same_rejects(tmp_path, kit, monkeypatch, window):
    # bad files, a missing one and a path shared by pins in different batches: the same
    # rejects whatever the batch size; a file opened once per batch that holds its path
    extra = [
        bad_pin("p4", "images/p1.png"),  # shares p1's (good) file
        bad_pin("p5", "images/missing.png"),
        bad_pin("p6", "images/broken.png"),
        bad_pin("p7", "images/broken.png"),
        bad_pin("p8", "images/p2.png"),
    ]
    root = kit.build(tmp_path / "c", pins=extra)
    (root / "images" / "broken.png").write_bytes(b"not a png")
    opened: list[str] = []

    def check(path, **kwargs):
        opened.append(path)
        return images.check_image(path, **kwargs)

    monkeypatch.setattr(validate, "_BATCH_ROWS", window)
    monkeypatch.setattr("pinclip.data.catalog.check_image", check)
    _, report = read_catalog(root)
    assert sorted((r.id, r.reason) for r in report.rejects) == [
        ("p5", images.MISSING_IMAGE),
        ("p6", images.UNDECODABLE_IMAGE),
        ("p7", images.UNDECODABLE_IMAGE),
    ]
    assert len(set(opened)) == 5 and (window < 8 or len(opened) == 5)
