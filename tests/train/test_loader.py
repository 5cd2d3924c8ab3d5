"""The DataLoader pipeline: batches are a pure function of the micro-batch index, the same
with worker processes as without, from any start (so a resume sees the same batches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from pinclip.model.inputs import PinInputs
from pinclip.train import load_config
from pinclip.train.data import BatchPlan, load_training_data
from pinclip.train.loader import micro_batches
from pinclip.train.recipe import build_model


def _setup(overrides):
    cfg = load_config(None, overrides)
    data = load_training_data(cfg.data, console=Console(quiet=True))
    model = build_model(
        cfg.model, seed=cfg.seed
    )  # tiny: stem and text encoder trainable -> decode + tokenize
    inputs = PinInputs.prepare(
        model,
        data,
        cache_dir=Path(cfg.data.cache_dir),
        device=torch.device("cpu"),
        console=Console(quiet=True),
        boards=True,
    )
    plan = BatchPlan(anchors=data.split.warm, batch_size=cfg.batch_size, seed=cfg.seed)
    return data, inputs, plan


def _flat(x):
    if isinstance(x, dict):
        return [t for k in sorted(x) for t in _flat(x[k])]
    if isinstance(x, list):
        return [t for v in x for t in _flat(v)]
    return [x]


@pytest.mark.slow  # spawns a worker process (seconds of imports)
def test_workers_and_resume_give_the_same_batches(tiny_overrides):
    data, inputs, plan = _setup(tiny_overrides)
    assert not inputs.all_stored
    kw = dict(rank=1, world=2, with_boards=True)  # the board term's positives too
    inline = list(micro_batches(plan, data, inputs, start=0, stop=5, **kw))
    resumed = list(micro_batches(plan, data, inputs, start=3, stop=5, workers=1, **kw))
    assert [b.index for b in inline] == [0, 1, 2, 3, 4] and [b.index for b in resumed] == [3, 4]
    for a, b in zip(inline[3:], resumed, strict=True):
        assert np.array_equal(a.mine, b.mine) and np.array_equal(a.neighbors, b.neighbors)
        assert np.array_equal(a.boards, b.boards) and len(a.boards) == 16
        assert len(a.mine) == 8  # rank 1's half of the global batch of 16
        for x, y in zip(_flat(a.inputs), _flat(b.inputs), strict=True):
            assert torch.equal(x, y)
    assert "images" in inline[0].inputs and "text" in inline[0].inputs
    assert inline[0].inputs["board_text"]["input_ids"].shape[0] == 8  # this rank's boards
    assert inline[0].inputs["images"].shape[0] == 16  # 8 anchors + their 8 neighbors
