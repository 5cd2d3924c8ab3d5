"""Synthetic builder: determinism (also across worker counts), ground truth, sizes, layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pinclip.data.builders.synthetic import (
    SHARD,
    build_synthetic_catalog,
    make_boards,
    make_chunk,
    make_topics,
)
from pinclip.data.catalog import read_catalog

PARQUETS = ("pins.parquet", "boards.parquet", "pin_board.parquet")


def test_same_seed_same_bytes_whatever_the_worker_count(synthetic_catalog, synth_args, tmp_path):
    again = build_synthetic_catalog(tmp_path / "again", workers=2, **synth_args)
    for name in PARQUETS:
        assert (again / name).read_bytes() == (synthetic_catalog / name).read_bytes(), name
    for i in (0, 999, 1000, synth_args["pins"] - 1):
        rel = f"images/{i // SHARD:05d}/{i:08d}.png"
        assert (again / rel).read_bytes() == (synthetic_catalog / rel).read_bytes()


def test_other_seed_other_catalog(synthetic_catalog, synth_args, tmp_path):
    other = build_synthetic_catalog(
        tmp_path / "o", workers=1, **{**synth_args, "pins": 200, "seed": 12}
    )
    a = pd.read_parquet(synthetic_catalog / "pins.parquet").head(200)
    b = pd.read_parquet(other / "pins.parquet")
    assert (a["title"] != b["title"]).mean() > 0.5


def test_reads_clean_with_expected_sizes(synthetic_catalog, synth_args):
    cat, report = read_catalog(synthetic_catalog)
    assert report.rejects == []
    n = synth_args["pins"]
    assert len(cat.pins) == n
    assert {"topic", "kind", "created_at"} <= set(cat.pins.columns)
    assert set(cat.pins["kind"]) == {"organic", "ad"}
    assert set(cat.boards["kind"]) == {"user"}
    meta = json.loads((synthetic_catalog / "catalog.json").read_text())
    assert meta["counts"] == {
        "pins": n,
        "boards": len(cat.boards),
        "edges": len(cat.edges),
        "curated_boards": 0,
        "user_boards": len(cat.boards),
    }
    shards = sorted((synthetic_catalog / "images").iterdir())
    assert [len(list(d.iterdir())) for d in shards] == [SHARD, n - SHARD]
    with Image.open(cat.image_path(cat.pins["image"].iloc[-1])) as img:
        assert img.size == (synth_args["size"],) * 2 and img.mode == "RGB"


def test_boards_hold_only_pins_of_their_topics(synthetic_catalog):
    pins = pd.read_parquet(synthetic_catalog / "pins.parquet")
    boards = pd.read_parquet(synthetic_catalog / "boards.parquet")
    edges = pd.read_parquet(synthetic_catalog / "pin_board.parquet")
    topic_of_pin = dict(zip(pins["pin_id"], pins["topic"], strict=True))
    topics_of_board = {b: set(t) for b, t in zip(boards["board_id"], boards["topics"], strict=True)}
    assert all(
        topic_of_pin[p] in topics_of_board[b]
        for p, b in zip(edges["pin_id"], edges["board_id"], strict=True)
    )
    saves = edges.groupby("pin_id").size()
    assert len(saves) == len(pins) and saves.mean() > 2  # every pin saved, most to several boards
    sizes = edges.groupby("board_id").size()
    assert sizes.max() > 5 * sizes.median()  # power-law board sizes
    assert not edges.duplicated(["pin_id", "board_id"]).any()


def test_captions_carry_topic_words(synthetic_catalog):
    topics = make_topics(50, 11)
    pins = pd.read_parquet(synthetic_catalog / "pins.parquet")
    hit = [
        any(w in set(topics.vocab[t]) for w in text.split())
        for t, text in zip(pins["topic"], pins["description"], strict=True)
    ]
    assert np.mean(hit) > 0.9


def test_board_sampling_never_crosses_topics():
    topics = make_topics(60, 3)
    boards = make_boards(topics, 200, 3)
    pins, edges = make_chunk(topics, boards, 0, 5000, 3)
    board_idx = np.array([int(b[1:]) for b in edges["board_id"]])
    pin_idx = np.array([int(p[1:]) for p in edges["pin_id"]])
    assert all(
        pins["topic"][p] in boards.topics[b] for p, b in zip(pin_idx, board_idx, strict=True)
    )
    assert all(len(set(topics.theme[t])) == 1 for t in boards.topics)  # one theme per board


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="pins"):
        build_synthetic_catalog(tmp_path / "a", pins=0)
    with pytest.raises(ValueError, match="one board per topic"):
        build_synthetic_catalog(tmp_path / "b", pins=100, topics=50, boards=10, progress=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        build_synthetic_catalog(tmp_path / "c", pins=10, progress=False)
