"""Whatever the rows, validation accounts for every one of them: kept or rejected, never both."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pinclip.data import validate
from pinclip.data.validate import ArrowColumns, RawTable, is_utf8, validate_tables

ids = st.one_of(st.sampled_from(["a", "b", "c", "d", ""]), st.none(), st.integers(0, 3))
texts = st.one_of(st.none(), st.sampled_from(["", " ", "ok", "caf\udce9"]), st.integers(0, 2))
images = st.one_of(st.none(), st.sampled_from(["x.png", "../x.png", "/abs/x.png", "d/../y.png"]))


def table(name: str, names: tuple[str, ...], rows: list[tuple]) -> RawTable:
    columns = {c: [row[k] for row in rows] for k, c in enumerate(names)}
    return RawTable(name, columns, list(range(len(rows))))


@settings(max_examples=150, deadline=None)
@given(
    pins=st.lists(st.tuples(ids, images, texts, texts), max_size=12),
    boards=st.lists(st.tuples(ids, texts), max_size=6),
    edges=st.lists(st.tuples(ids, ids), max_size=15),
)
def test_every_row_is_kept_or_rejected_once(tmp_path_factory, pins, boards, edges):
    frames, report = validate_tables(
        table("pins", ("pin_id", "image", "title", "description"), pins),
        table("boards", ("board_id", "title"), boards),
        table("edges", ("pin_id", "board_id"), edges),
        image_root=tmp_path_factory.getbasetemp(),
    )
    for name, rows in (("pins", pins), ("boards", boards), ("edges", edges)):
        assert report.good[name] + report.rejected(name) == len(rows)
        assert len({r.row for r in report.rejects if r.file == name}) == report.rejected(name)
    assert frames["pins"]["pin_id"].is_unique and frames["boards"]["board_id"].is_unique
    kept_pairs = list(zip(frames["edges"]["pin_id"], frames["edges"]["board_id"], strict=True))
    assert len(set(kept_pairs)) == len(kept_pairs)
    assert {pin for pin, _ in kept_pairs} <= set(frames["pins"]["pin_id"])
    assert {board for _, board in kept_pairs} <= set(frames["boards"]["board_id"])
    for text in frames["pins"]["title"].tolist() + frames["boards"]["title"].tolist():
        # kept text is valid UTF-8 or null (NaN: the missing value of an Arrow-backed str column)
        assert pd.isna(text) or (isinstance(text, str) and is_utf8(text))


edge_ids = st.one_of(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["", " ", "\x1c", " a", "\u3000", "\x85"]),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@example(pins=[("a", "../x.png")], boards=[("b", "t")], edges=[("a", "b")])  # rejected pin
@example(pins=[("a", "x.png")], boards=[("b", "")], edges=[("a", "b")])  # rejected board
@example(pins=[("a", "x.png")], boards=[("b", "t")], edges=[("a", "b"), ("c", "b"), ("a", "c")])
@example(pins=[("a", "x.png")], boards=[("b", "t")], edges=[("a", "b"), ("a", "b"), (" ", "b")])
@example(pins=[("\x1c", "x.png")], boards=[("b", "t")], edges=[("\x1c", "b"), ("a", None)])
@given(
    pins=st.lists(st.tuples(edge_ids, st.sampled_from(["x.png", "../x.png"])), max_size=8),
    boards=st.lists(st.tuples(edge_ids, st.sampled_from(["t", ""])), max_size=6),
    edges=st.lists(st.tuples(edge_ids, edge_ids), max_size=20),
)
def test_arrow_edges_check_rejects_exactly_like_the_python_one(
    tmp_path_factory, pins, boards, edges
):
    """Parquet edges are checked over Arrow arrays; CSV/JSONL edges row by row in Python:
    the same rows kept, the same rejects with the same reasons and details, whether the Arrow
    check takes the edges all at once or a few at a time, and when ids' hashes collide."""

    def run(arrow: bool):
        edge_table = table("edges", ("pin_id", "board_id"), edges)
        if arrow:
            t = pa.table(
                {
                    "pin_id": pa.array([e[0] for e in edges], pa.string()),
                    "board_id": pa.array([e[1] for e in edges], pa.string()),
                }
            )
            edge_table = RawTable("edges", ArrowColumns(t), range(len(edges)), arrow=t)
        frames, report = validate_tables(
            table("pins", ("pin_id", "image"), pins),
            table("boards", ("board_id", "title"), boards),
            edge_table,
            image_root=tmp_path_factory.getbasetemp(),
        )
        kept = list(zip(frames["edges"]["pin_id"], frames["edges"]["board_id"], strict=True))
        return kept, [r for r in report.rejects if r.file == "edges"]

    expected = run(arrow=False)
    assert run(arrow=True) == expected
    with patch.object(validate, "_EDGE_ROWS", 3):
        assert run(arrow=True) == expected
    with patch.object(validate, "hash_ids", lambda ids: np.zeros(len(ids), np.uint64)):
        assert run(arrow=True) == expected  # every id's hash the same: the exact lookups


texts_arrow = st.one_of(st.none(), st.sampled_from(["", " ", "ok", "\x1c", "\u3000", "t a"]))
kinds = st.one_of(st.none(), st.sampled_from(["organic", "ad", "curated", "user", "bad"]))


@settings(max_examples=300, deadline=None)
@example(pins=[("a", "x.png", None, None, None), ("a", "x.png", "t", None, None)], boards=[])
@example(pins=[("a", "../x.png", "t", "", "ad"), ("b", "x.png", " ", "", "bad")], boards=[])
@example(pins=[], boards=[("b", " ", None), ("b", "t", "user"), ("\x1c", "t", "organic")])
@given(
    pins=st.lists(
        st.tuples(
            edge_ids,
            st.sampled_from(["x.png", "../x.png", "", "d/y.png"]),
            texts_arrow,
            texts_arrow,
            kinds,
        ),
        max_size=10,
    ),  # fmt: skip
    boards=st.lists(st.tuples(edge_ids, texts_arrow, kinds), max_size=8),
)
def test_arrow_entity_checks_reject_exactly_like_the_python_ones(tmp_path_factory, pins, boards):
    """Parquet pins and boards are checked over Arrow arrays (ids, text, kinds, image paths and
    the files, in batches), CSV/JSONL ones row by row: the same rows kept, the same rejects
    with the same reasons and details, the same image-only pins."""
    root = tmp_path_factory.getbasetemp()
    (root / "x.png").write_bytes(b"not an image")  # a file that exists and fails to decode

    def image_check(path: str) -> None:
        from pinclip.data.images import check_image

        check_image(path)

    def run(arrow: bool):
        tables = []
        for name, names, rows in (
            ("pins", ("pin_id", "image", "title", "description", "kind"), pins),
            ("boards", ("board_id", "title", "kind"), boards),
        ):
            raw = table(name, names, rows)
            if arrow:
                t = pa.table({c: pa.array(raw.columns[c], pa.string()) for c in names})
                raw = RawTable(name, ArrowColumns(t), range(len(rows)), arrow=t)
            tables.append(raw)
        frames, report = validate_tables(
            *tables, table("edges", ("pin_id", "board_id"), []), image_root=root,
            image_check=image_check,
        )  # fmt: skip
        kept = {k: frames[k].astype(object).where(frames[k].notna(), None).values.tolist()
                for k in ("pins", "boards")}  # fmt: skip
        return kept, report.rejects, report.warnings, report.image_only

    assert run(arrow=True) == run(arrow=False)
