"""Fuzzing catalog validation: corrupt a valid catalog many ways, check the report is exact.

Hypothesis picks distinct rows and a corruption for each (image bytes flipped or truncated,
missing files, escaping paths, duplicated ids, edges to unknown ids, text that is not a
string, empty or invalid UTF-8). The oracle: exactly the corrupted rows (plus edges that
touch a corrupted pin or board) are rejected, each with file, row and the expected reason,
and every other row is kept unchanged. Dropping a column is a clear CatalogError, never a crash.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinclip.data import validate as v
from pinclip.data.builders.synthetic import build_synthetic_catalog
from pinclip.data.catalog import BOARDS_FILE, EDGES_FILE, PINS_FILE, read_parquet_table
from pinclip.data.images import (
    IMAGE_PATH_ESCAPES,
    MISSING_IMAGE,
    MISSING_IMAGE_PATH,
    TRUNCATED_IMAGE,
    UNDECODABLE_IMAGE,
    check_image,
)
from pinclip.data.validate import CatalogError, RawTable, validate_tables

from .conftest import record

FILES = {"pins": PINS_FILE, "boards": BOARDS_FILE, "edges": EDGES_FILE}
ID = {"pins": "pin_id", "boards": "board_id"}
BAD_TEXT = [5, 1.5, True, ["a"], {"t": 1}, b"bytes"]
EDGE_CASCADE = {
    v.EDGE_UNKNOWN_PIN,
    v.EDGE_UNKNOWN_BOARD,
    v.EDGE_REJECTED_PIN,
    v.EDGE_REJECTED_BOARD,
}
TRIED = {"examples": 0, "corruptions": 0}

# corruption -> the reason(s) its row must be rejected with
PIN_CORRUPTIONS = {
    "flip header byte": {UNDECODABLE_IMAGE},
    "truncate image": {UNDECODABLE_IMAGE, TRUNCATED_IMAGE},
    "missing file": {MISSING_IMAGE},
    "escape ..": {IMAGE_PATH_ESCAPES},
    "escape absolute": {IMAGE_PATH_ESCAPES},
    "escape via subdir": {IMAGE_PATH_ESCAPES},
    "empty image path": {MISSING_IMAGE_PATH},
    "duplicate id": {v.DUPLICATE_PIN},
    "invalid id": {v.INVALID_ID},
    "non-string title": {v.NON_STRING_TEXT},
    "invalid utf-8 title": {v.INVALID_UTF8},
    "invalid utf-8 id": {v.INVALID_UTF8},
}
BOARD_CORRUPTIONS = {
    "duplicate id": {v.DUPLICATE_BOARD},
    "invalid id": {v.INVALID_ID},
    "non-string title": {v.NON_STRING_TEXT},
    "empty title": {v.EMPTY_TEXT},
    "invalid utf-8 title": {v.INVALID_UTF8},
    "bad kind": {v.INVALID_KIND},
}
EDGE_CORRUPTIONS = {
    "unknown pin": {v.EDGE_UNKNOWN_PIN},
    "unknown board": {v.EDGE_UNKNOWN_BOARD},
    "duplicate edge": {v.DUPLICATE_EDGE},
    "missing id": {v.INVALID_ID},
}


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fuzz") / "catalog"
    build_synthetic_catalog(root, pins=24, seed=0, size=16, progress=False)
    # the fuzz edits Python lists, as a CSV/JSONL table holds them: no Arrow table behind
    # them (the Arrow path is compared with this one by tests/data's property test)
    tables = {
        k: RawTable(t.file, {c: list(t.columns[c]) for c in t.columns}, list(t.rows))
        for k, t in ((k, read_parquet_table(root / f)) for k, f in FILES.items())
    }
    _, report = validate_tables(*tables.values(), image_root=root, image_check=check_image)
    assert report.ok, report.rejects[:3]  # the starting point is clean
    yield root, tables
    record("catalog fuzz", **TRIED)


def corruptions(kinds: dict, n: int):
    return st.dictionaries(st.integers(0, n - 1), st.sampled_from(sorted(kinds)), max_size=6)


def _corrupt_pin(root: Path, cols: dict, i: int, kind: str, bad_row: int, rng_byte: int) -> None:
    image = root / cols["image"][i]
    bad = root / "corrupt" / f"{i}.png"
    bad.parent.mkdir(exist_ok=True)
    data = image.read_bytes()
    if kind == "flip header byte":  # signature or IHDR: both are checked (IHDR by its CRC)
        k = rng_byte % 29
        bad.write_bytes(data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1 :])
    elif kind == "truncate image":
        bad.write_bytes(data[: rng_byte % (len(data) - 20)])
    if kind in ("flip header byte", "truncate image"):
        cols["image"][i] = f"corrupt/{i}.png"
    cols["image"][i] = {
        "missing file": f"images/none-{i}.png",
        "escape ..": "../" * (1 + rng_byte % 4) + "etc/passwd",
        "escape absolute": "/etc/passwd",
        "escape via subdir": "images/../../outside.png",
        "empty image path": " ",
    }.get(kind, cols["image"][i])
    if kind == "duplicate id":
        cols["pin_id"][i] = cols["pin_id"][bad_row]
    elif kind == "invalid id":
        cols["pin_id"][i] = [None, "", "   ", 1.5][rng_byte % 4]
    elif kind == "non-string title":
        cols["title"][i] = BAD_TEXT[rng_byte % len(BAD_TEXT)]
    elif kind == "invalid utf-8 title":
        cols["title"][i] = b"caf\xe9".decode("utf-8", "surrogateescape")
    elif kind == "invalid utf-8 id":
        cols["pin_id"][i] = b"p\xff".decode("utf-8", "surrogateescape") + str(i)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pins=corruptions(PIN_CORRUPTIONS, 24),
    boards=corruptions(BOARD_CORRUPTIONS, 50),
    edges=corruptions(EDGE_CORRUPTIONS, 32),
    byte=st.integers(0, 10_000),
)
def test_every_corruption_is_reported_and_no_good_row_dropped(
    valid, tmp_path, pins, boards, edges, byte
):
    root, clean = valid
    t = {k: copy.deepcopy(table) for k, table in clean.items()}
    work = tmp_path / f"ex{TRIED['examples']}"
    (work).mkdir()
    (work / "images").symlink_to(root / "images")  # lexically inside the catalog
    orig_ids = {k: list(clean[k].columns[ID[k]]) for k in ID}
    # a duplicate copies the id of a clean, earlier row (the first owner keeps it)
    clean_rows = {
        k: [r for r in range(len(clean[k])) if r not in d]
        for k, d in (("pins", pins), ("boards", boards))
    }
    expected: dict[str, dict[int, set]] = {"pins": {}, "boards": {}, "edges": {}}
    for i, kind in sorted(pins.items()):
        earlier = [r for r in clean_rows["pins"] if r < i]
        if kind == "duplicate id" and not earlier:
            continue
        _corrupt_pin(
            work, t["pins"].columns, i, kind, earlier[byte % len(earlier)] if earlier else 0, byte
        )
        expected["pins"][i] = PIN_CORRUPTIONS[kind]
    for i, kind in sorted(boards.items()):
        cols, earlier = t["boards"].columns, [r for r in clean_rows["boards"] if r < i]
        if kind == "duplicate id":
            if not earlier:
                continue
            cols["board_id"][i] = cols["board_id"][earlier[byte % len(earlier)]]
        elif kind == "invalid id":
            cols["board_id"][i] = [None, "", 2.5][byte % 3]
        elif kind == "non-string title":
            cols["title"][i] = BAD_TEXT[byte % len(BAD_TEXT)]
        elif kind == "empty title":
            cols["title"][i] = ["", "  ", None][byte % 3]
        elif kind == "invalid utf-8 title":
            cols["title"][i] = b"\xff\xfe".decode("utf-8", "surrogateescape")
        elif kind == "bad kind":
            cols["kind"][i] = "weird"
        expected["boards"][i] = BOARD_CORRUPTIONS[kind]
    bad_pins = {orig_ids["pins"][i] for i in expected["pins"]}
    bad_boards = {orig_ids["boards"][i] for i in expected["boards"]}
    cols = t["edges"].columns
    ok_edges = [r for r in range(len(cols["pin_id"])) if r not in edges
                and cols["pin_id"][r] not in bad_pins and cols["board_id"][r] not in bad_boards]  # fmt: skip
    for i, kind in sorted(edges.items()):
        earlier = [r for r in ok_edges if r < i]
        if kind == "duplicate edge":
            if not earlier:
                continue
            j = earlier[byte % len(earlier)]
            cols["pin_id"][i], cols["board_id"][i] = cols["pin_id"][j], cols["board_id"][j]
        elif kind == "unknown pin":
            cols["pin_id"][i] = f"ghost-{i}"
        elif kind == "unknown board":
            if cols["pin_id"][i] in bad_pins:
                cols["pin_id"][i] = orig_ids["pins"][clean_rows["pins"][0]]
            cols["board_id"][i] = f"ghost-{i}"
        elif kind == "missing id":
            cols["board_id"][i] = None
        expected["edges"][i] = EDGE_CORRUPTIONS[kind]
    for r in range(len(cols["pin_id"])):
        if r not in expected["edges"] and (
            cols["pin_id"][r] in bad_pins or cols["board_id"][r] in bad_boards
        ):
            expected["edges"][r] = EDGE_CASCADE  # the edge of a rejected pin or board goes too

    frames, report = validate_tables(
        t["pins"], t["boards"], t["edges"], image_root=work, image_check=check_image, workers=1
    )
    TRIED["examples"] += 1
    TRIED["corruptions"] += sum(len(expected[k]) for k in expected)

    for kind, file in (("pins", PINS_FILE), ("boards", BOARDS_FILE), ("edges", EDGES_FILE)):
        found = {r.row: r for r in report.rejects if r.file == file}
        assert set(found) == set(expected[kind]), (kind, sorted(found), sorted(expected[kind]))
        for row, reject in found.items():
            assert reject.reason in expected[kind][row], (kind, row, reject)
            assert reject.detail, reject
        kept = [r for r in range(len(clean[kind])) if r not in expected[kind]]
        key = ["pin_id", "board_id"] if kind == "edges" else [ID[kind], "title"]
        want = [tuple(str(t[kind].columns[c][r]) for c in key) for r in kept]
        got = [tuple(map(str, row)) for row in frames[kind][key].itertuples(index=False)]
        assert got == want, f"{kind}: good rows dropped or changed"


@pytest.mark.parametrize(
    ("kind", "column"),
    [("pins", "pin_id"), ("pins", "image"), ("boards", "title"), ("edges", "board_id")],
)
def test_dropped_required_column_is_a_clear_error(valid, kind, column):
    root, clean = valid
    t = copy.deepcopy(clean)
    del t[kind].columns[column]
    with pytest.raises(CatalogError, match=f"{FILES[kind]}: missing required column '{column}'"):
        validate_tables(t["pins"], t["boards"], t["edges"], image_root=root)
    TRIED["corruptions"] += 1


@pytest.mark.parametrize("column", ["title", "description", "link", "kind"])
def test_dropped_optional_column_keeps_every_row(valid, column):
    root, clean = valid
    t = copy.deepcopy(clean)
    del t["pins"].columns[column]
    frames, report = validate_tables(t["pins"], t["boards"], t["edges"], image_root=root)
    assert column == "title" or report.ok, report.rejects[:3]
    if report.ok:
        assert len(frames["pins"]) == len(clean["pins"])
    TRIED["corruptions"] += 1
