"""Whatever the rows, validation accounts for every one of them: kept or rejected, never both."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pinclip.data.validate import RawTable, is_utf8, validate_tables

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
