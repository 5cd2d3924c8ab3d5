"""No cold (or validation) pin is ever drawn by training, and evaluation sees the same split."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from pinclip.evaluate.data import EvalData
from pinclip.train import load_config
from pinclip.train.data import BatchPlan, load_training_data

from .conftest import tiny_run_overrides


@pytest.mark.parametrize("sampler", ["coboard", "random_walk"])
def test_training_batches_never_draw_a_held_out_pin(eval_catalog, tmp_path, sampler):
    cfg = load_config(
        None,
        tiny_run_overrides(eval_catalog, tmp_path / "run", tmp_path / "cache")
        + [f"data.sampler={sampler}"],
    )
    data = load_training_data(cfg.data, console=Console(quiet=True))
    plan = BatchPlan(anchors=data.split.warm, batch_size=cfg.batch_size, seed=cfg.seed)
    drawn = []
    for step in range(2 * plan.steps_per_epoch):  # two full epochs
        anchors, neighbors = plan.global_batch(step, data)
        drawn += [anchors, neighbors[neighbors >= 0]]
    drawn = np.unique(np.concatenate(drawn))
    held_out = np.concatenate([data.split.cold, data.split.val])
    assert len(data.split.cold) > 0
    assert np.intersect1d(drawn, held_out).size == 0
    # the training graph has no edge of a held-out pin, so its neighbors cannot leak either
    assert data.split.train_graph.pin_degree[held_out].sum() == 0
    # and the evaluation rebuilds exactly this split
    ev = EvalData.from_config(cfg.data)
    assert np.array_equal(ev.split.cold, data.split.cold) and np.array_equal(
        ev.split.warm, data.split.warm
    )


def test_eval_split_of_a_run_is_its_training_split(tiny_run):
    from_run = EvalData.from_run(tiny_run)
    from_model_dir = EvalData.from_run(tiny_run / "best")
    assert np.array_equal(from_run.split.cold, from_model_dir.split.cold)
    assert from_run.curated_boards.sum() == 12
    curated = from_run.relevance_graph("curated")
    assert curated.n_boards == 12 and curated.n_pins == from_run.n_pins


def test_bare_model_dir_without_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--catalog"):
        EvalData.from_run(tmp_path)
