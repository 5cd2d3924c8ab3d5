"""Emoji builder: real Unicode curation, deterministic output, skin-tone handling."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from pinclip.data.builders.emoji import SKIN_TONES, base_name, build_emoji_catalog, read_emoji_test
from pinclip.data.catalog import read_catalog

PARQUETS = ("pins.parquet", "boards.parquet", "pin_board.parquet")


def test_unicode_data_has_about_100_subgroups():
    entries = read_emoji_test()
    assert len(entries) > 3000
    assert 90 <= len({e.subgroup for e in entries}) <= 120
    assert all(e.group != "Component" for e in entries)


def test_base_name_strips_only_skin_tones():
    assert base_name("waving hand: light skin tone") == "waving hand"
    assert base_name("handshake: medium-light skin tone, light skin tone") == "handshake"
    assert base_name("kiss: person, person, dark skin tone") == "kiss: person, person"
    assert base_name("flag: Japan") == "flag: Japan"


def test_same_arguments_give_byte_identical_tables(emoji_catalog, emoji_args, tmp_path):
    again = build_emoji_catalog(tmp_path / "again", workers=2, **emoji_args)
    for name in PARQUETS:
        assert (again / name).read_bytes() == (emoji_catalog / name).read_bytes(), name
    first = sorted((emoji_catalog / "images").iterdir())
    assert [p.read_bytes() for p in first] == [
        (again / "images" / p.name).read_bytes() for p in first
    ]


def test_other_seed_changes_user_boards_only(emoji_catalog, emoji_args, tmp_path):
    other = build_emoji_catalog(tmp_path / "other", workers=1, **{**emoji_args, "seed": 8})
    assert (other / "pins.parquet").read_bytes() == (emoji_catalog / "pins.parquet").read_bytes()
    assert (other / "pin_board.parquet").read_bytes() != (
        emoji_catalog / "pin_board.parquet"
    ).read_bytes()


def test_catalog_reads_clean_with_expected_columns(emoji_catalog, emoji_args):
    cat, report = read_catalog(emoji_catalog)
    assert report.rejects == []
    pins, boards, edges = cat.pins, cat.boards, cat.edges
    assert len(pins) == emoji_args["limit"]
    assert {"pin_id", "image", "title", "description", "group", "subgroup", "base_pin_id"} <= set(
        pins.columns
    )
    assert set(boards["kind"]) == {"curated", "user"}
    assert (boards["kind"] == "user").sum() == emoji_args["user_boards"]
    assert pins["description"].str.len().gt(0).all()
    with Image.open(cat.image_path(pins["image"].iloc[0])) as img:
        assert img.size == (emoji_args["size"],) * 2
    meta = json.loads((emoji_catalog / "catalog.json").read_text())
    assert "openmoji.org" in json.dumps(meta["attribution"])
    assert "CC BY-SA 4.0" in json.dumps(meta["attribution"])
    assert meta["counts"] == {
        "pins": len(pins),
        "boards": len(boards),
        "edges": len(edges),
        "curated_boards": int((boards["kind"] == "curated").sum()),
        "user_boards": emoji_args["user_boards"],
    }


def test_curated_boards_are_the_subgroups(emoji_catalog):
    pins = pd.read_parquet(emoji_catalog / "pins.parquet")
    boards = pd.read_parquet(emoji_catalog / "boards.parquet")
    edges = pd.read_parquet(emoji_catalog / "pin_board.parquet")
    curated = boards[boards["kind"] == "curated"]
    assert sorted(curated["title"]) == sorted(pins["subgroup"].str.replace("-", " ").unique())
    on_curated = edges.merge(curated, on="board_id").merge(pins, on="pin_id")
    assert len(on_curated) == len(pins)  # every pin exactly once, on its own subgroup's board
    assert (on_curated["board_id"] == "sub-" + on_curated["subgroup"]).all()


def test_user_boards_mix_related_subgroups_and_share_pins(emoji_catalog):
    pins = pd.read_parquet(emoji_catalog / "pins.parquet")
    boards = pd.read_parquet(emoji_catalog / "boards.parquet")
    edges = pd.read_parquet(emoji_catalog / "pin_board.parquet").merge(pins, on="pin_id")
    user = edges[edges["board_id"].isin(boards.loc[boards["kind"] == "user", "board_id"])]
    per_board = user.groupby("board_id").agg(
        groups=("group", "nunique"), subs=("subgroup", "nunique")
    )
    assert (per_board["groups"] == 1).all() and (per_board["subs"] <= 3).all()
    assert edges.groupby("pin_id").size().max() > 2  # popular pins sit on several boards
    assert not edges.duplicated(["pin_id", "board_id"]).any()


@pytest.mark.parametrize("skin_tones", [False, True])
def test_skin_tones_are_optional_near_duplicates(tmp_path, skin_tones):
    root = build_emoji_catalog(
        tmp_path / "c",
        subgroups=["hand-fingers-open"],
        user_boards=5,
        size=16,
        skin_tones=skin_tones,
        workers=1,
        progress=False,
    )
    pins = pd.read_parquet(root / "pins.parquet")
    toned = pins["emoji"].map(lambda s: any(ord(c) in SKIN_TONES for c in s))
    assert toned.sum() == pins["base_pin_id"].notna().sum()
    if not skin_tones:
        assert not toned.any()
        return
    assert toned.sum() == 5 * (~toned).sum()  # five tones per base in this subgroup
    bases = pins.set_index("pin_id").loc[pins.loc[toned, "base_pin_id"]]
    assert (bases["subgroup"].to_numpy() == pins.loc[toned, "subgroup"].to_numpy()).all()
    assert all(
        t.startswith(b + ":") for t, b in zip(pins.loc[toned, "title"], bases["title"], strict=True)
    )


def test_unknown_subgroup_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no-such-subgroup"):
        build_emoji_catalog(tmp_path / "c", subgroups=["no-such-subgroup"], progress=False)
