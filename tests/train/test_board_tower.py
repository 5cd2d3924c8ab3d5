"""The board tower in training: held-out boards, board sampling, and a tiny run with it on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pinclip.train import load_config, train
from pinclip.train.data import anchor_boards, batch_plan, load_training_data


@pytest.fixture
def curated_catalog(tiny_catalog, tmp_path) -> Path:
    root = tmp_path / "curated"
    shutil.copytree(tiny_catalog, root)
    boards = pd.read_parquet(root / "boards.parquet")
    boards.loc[:11, "kind"] = "curated"
    boards.to_parquet(root / "boards.parquet", index=False)
    return root


def test_held_out_boards_are_never_positives_and_leave_the_pin_split_alone(
    curated_catalog, tiny_overrides
):
    base = [*tiny_overrides, f"data.catalog={curated_catalog}", "data.check_images=false"]
    cfg = load_config(None, base)
    data = load_training_data(cfg.data)
    held = data.held_out_boards
    curated = np.flatnonzero(data.catalog.boards["kind"].to_numpy() == "curated")
    assert len(np.intersect1d(held, curated)) >= 1 and len(np.setdiff1d(held, curated)) >= 1
    # a seeded function of the split seed, and the pin split does not depend on it
    again = load_training_data(cfg.data)
    assert np.array_equal(again.held_out_boards, held)
    none = load_training_data(load_config(None, [*base, "data.board_holdout_frac=0"]).data)
    assert len(none.held_out_boards) == 0
    for part in ("warm", "val", "cold"):
        assert np.array_equal(getattr(none.split, part), getattr(data.split, part))
    # the board graph has no edge to a held-out board; the training graph still does
    assert data.board_edges[:, held].nnz == 0
    assert data.split.train_graph.board_size[held].sum() > 0
    # two epochs of sampled positives: never a held-out board, always a board of the anchor
    plan = batch_plan(cfg, data)
    seen = set()
    pb = data.split.train_graph.pin_board.toarray() > 0
    for index in range(2 * plan.steps_per_epoch):
        anchors, _ = plan.global_batch(index, data)
        boards = anchor_boards(plan, data, anchors, index)
        assert np.array_equal(boards, anchor_boards(plan, data, anchors, index))  # pure
        ok = boards >= 0
        assert not np.isin(boards[ok], held).any()
        assert pb[anchors[ok], boards[ok]].all()
        seen |= set(boards[ok].tolist())
    assert len(seen) > len(held)  # the draw covers many boards
    q = np.exp(data.board_log_q)
    assert np.isclose(q.sum(), 1.0, atol=1e-4) and q[held].max() < 1e-9


@pytest.mark.parametrize(
    "switches",
    [[], ["loss.nbr_weight=0"], ["data.batch=boards"]],
    ids=["pairs", "lambda-0", "board-batches"],
)
def test_tiny_run_trains_the_board_term(tiny_overrides, switches):
    cfg = load_config(
        None, [*tiny_overrides, "max_steps=3", "val_every=3", "loss.board_weight=1", *switches]
    )
    result = train(cfg)
    assert result.steps == 3 and np.isfinite(result.final_loss)
    lines = [json.loads(x) for x in Path(cfg.run_dir, "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    assert all(np.isfinite(x["board"]) and "board_pin_board_acc" in x for x in steps)
    assert ("nbr" in steps[0]) == (cfg.loss.nbr_weight > 0)


def test_image_only_pins_train_the_board_term(tiny_catalog, tiny_overrides, tmp_path):
    root = tmp_path / "textless"
    shutil.copytree(tiny_catalog, root)
    pins = pd.read_parquet(root / "pins.parquet")
    pins.loc[::2, ["title", "description"]] = None
    pins.to_parquet(root / "pins.parquet", index=False)
    cfg = load_config(
        None,
        [
            *tiny_overrides,
            f"data.catalog={root}",
            "max_steps=2",
            "val_every=2",
            "loss.board_weight=1",
            "loss.nbr_weight=0",
        ],
    )
    result = train(cfg)
    assert np.isfinite(result.final_loss)
