"""Batch kinds and the cheaper neighbor side: board-aware P×K batches, detached neighbors,
image-only pins in training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pinclip.errors import ConfigError
from pinclip.train import load_config, train
from pinclip.train.data import BoardBatchPlan, batch_plan, load_training_data


@pytest.fixture
def data_and_cfg(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "data.batch=boards", "data.board_k=4"])
    return load_training_data(cfg.data), cfg


def test_board_batches_hold_board_mates_and_are_a_pure_function_of_the_step(data_and_cfg):
    data, cfg = data_and_cfg
    plan = batch_plan(cfg, data)
    assert isinstance(plan, BoardBatchPlan)
    a, n = plan.global_batch(3, data)
    b, _ = plan.global_batch(3, data)
    assert np.array_equal(a, b) and (n == -1).all()
    assert len(a) == cfg.batch_size == len(set(a.tolist()))
    assert set(a.tolist()) <= set(data.split.warm.tolist())  # never a held-out pin
    co = data.split.train_graph.co_board_mask(a, a) & ~np.eye(len(a), dtype=bool)
    assert co.any(axis=1).mean() >= 0.5  # most anchors have a board-mate in the batch
    # with plain pairs batches the anchors are a random permutation: far fewer board-mates
    pairs, _ = batch_plan(
        load_config(None, [*cfg_overrides(cfg), "data.batch=pairs"]), data
    ).global_batch(3, data)
    co_pairs = data.split.train_graph.co_board_mask(pairs, pairs) & ~np.eye(len(pairs), dtype=bool)
    assert co.sum() > co_pairs.sum()


def test_hard_negative_batches_bring_walk_reached_non_board_mates(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "data.hard_negatives=3"])
    data = load_training_data(cfg.data)
    plan = batch_plan(cfg, data)
    a, n = plan.global_batch(2, data)
    assert np.array_equal(a, plan.global_batch(2, data)[0])  # a pure function of the step
    assert len(a) == cfg.batch_size == len(set(a.tolist()))
    assert set(a.tolist()) <= set(data.split.warm.tolist()) and len(n) == len(a)
    seeds = a[: cfg.batch_size // 4]
    graph = data.split.train_graph
    hard = a[len(seeds) :]
    # the pins after the seeds are mostly hard: reached by a seed's walks, on none of its boards
    reached = [set(plan.walks.neighbors(int(s))[0].tolist()) for s in seeds]
    is_hard = [
        any(int(p) in r and not graph.co_board_mask(np.array([s]), np.array([p]))[0, 0]
            for s, r in zip(seeds, reached, strict=True))
        for p in hard
    ]  # fmt: skip
    assert np.mean(is_hard) >= 0.5
    plain, _ = batch_plan(load_config(None, [*cfg_overrides(cfg)]), data).global_batch(2, data)
    assert not np.array_equal(np.sort(plain), np.sort(a))
    for bad in (["data.hard_negatives=-1"], ["data.hard_negatives=2", "data.batch=boards"]):
        with pytest.raises(ConfigError, match="hard_negatives"):  # when loaded, before any data
            load_config(None, [*tiny_overrides, *bad])


def cfg_overrides(cfg) -> list[str]:
    return [
        f"data.catalog={cfg.data.catalog}",
        f"data.cache_dir={cfg.data.cache_dir}",
        "data.build_if_missing=null",
        f"batch_size={cfg.batch_size}",
    ]


def test_curated_weight_zero_draws_user_boards_only(tiny_catalog, tiny_overrides, tmp_path):
    root = tmp_path / "curated"
    shutil.copytree(tiny_catalog, root)
    boards = pd.read_parquet(root / "boards.parquet")
    boards.loc[:4, "kind"] = "curated"
    boards.to_parquet(root / "boards.parquet", index=False)
    base = [*tiny_overrides, f"data.catalog={root}", "data.batch=boards"]
    cfg = load_config(None, base)
    data = load_training_data(cfg.data)
    every = batch_plan(cfg, data)
    users = batch_plan(load_config(None, [*base, "data.curated_weight=0"]), data)
    assert 0 < len(every.board_pins) - len(users.board_pins) <= 5
    heavy = batch_plan(load_config(None, [*base, "data.curated_weight=10"]), data)
    assert heavy.board_p.max() > every.board_p.max()


@pytest.mark.parametrize(
    "switches",
    [
        ["data.batch=boards"],
        ["loss.nbr_detach=true"],
        ["loss.nbr_positives=board"],
        ["data.hard_negatives=2"],
    ],
    ids=["boards", "detach", "multi-positive", "hard-negatives"],
)
def test_every_switch_trains_with_a_finite_loss(tiny_overrides, switches):
    cfg = load_config(None, [*tiny_overrides, "max_steps=3", "val_every=3", *switches])
    result = train(cfg)
    assert result.steps == 3 and np.isfinite(result.final_loss)
    lines = [json.loads(x) for x in Path(cfg.run_dir, "metrics.jsonl").read_text().splitlines()]
    assert any("nbr" in x for x in lines)


def test_image_only_pins_train_with_the_neighbor_terms(tiny_catalog, tiny_overrides, tmp_path):
    root = tmp_path / "textless"
    shutil.copytree(tiny_catalog, root)
    pins = pd.read_parquet(root / "pins.parquet")
    pins.loc[::3, ["title", "description"]] = None  # a third of the pins have no text
    pins.to_parquet(root / "pins.parquet", index=False)
    cfg = load_config(None, [*tiny_overrides, f"data.catalog={root}", "max_steps=3"])
    data = load_training_data(cfg.data)
    assert data.n_rejected == 0 and (~data.has_text).sum() == len(pins[::3])
    result = train(cfg)
    assert np.isfinite(result.final_loss)
