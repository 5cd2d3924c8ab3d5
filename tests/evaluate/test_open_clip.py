"""The open_clip baseline: open_clip's own training loop for a few steps, then evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pinclip.evaluate.baselines.base import check_embeddings, normalize
from pinclip.evaluate.baselines.open_clip import (
    OpenCLIPEmbedder,
    create_open_clip,
    lock_image_trunk,
    open_clip_config,
)
from pinclip.evaluate.baselines.pretrained import Lite0Embedder
from pinclip.evaluate.data import EvalData
from pinclip.evaluate.tasks import evaluate_embedder
from pinclip.retrieval import related_pins_recall


@pytest.fixture(scope="module")
def trained(open_clip_run):
    """(config, run dir) of a 12-step open_clip run on the eval catalog (conftest)."""
    return open_clip_run


def test_open_clip_trains_on_warm_pins_and_evaluates(trained):
    cfg, run = trained
    info = json.loads((run / "train_info.json").read_text())
    data = EvalData.from_config(cfg.data)
    assert info["warm_pins"] == len(data.split.warm)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, info["steps"] + 1))
    assert all("loss" in r for r in rows)
    model = OpenCLIPEmbedder(run)
    emb = check_embeddings(model.embed_pins(data), data.n_pins, "open_clip")
    assert emb.pin.shape[1] == 32  # the tiny preset's embed_dim: same output size as ours
    result = evaluate_embedder(model, data, n_resamples=100)
    # every task runs; the only skip is the image-only task, the synthetic catalog has no such pins
    assert set(result.skipped) <= {"related_cold_textless"}, result.skipped


def test_trained_image_embeddings_rank_pins_above_a_random_projection_of_lite0(trained):
    """The tower starts as Lite0 features through a random linear projection: training must
    improve on that, not fall to the floor (it did when the lock dropped the trunk's ReLU6s)."""
    cfg, run = trained
    data = EvalData.from_config(cfg.data)
    pins = np.arange(data.n_pins)
    image = OpenCLIPEmbedder(run).embed_pins(data).image
    lite0 = Lite0Embedder(image_size=64).embed_pins(data).image
    projected = [
        normalize(
            lite0
            @ torch.randn(
                lite0.shape[1], image.shape[1], generator=torch.Generator().manual_seed(s)
            )
        )
        for s in range(5)
    ]
    recall = lambda e: related_pins_recall(e, e, data.graph, pins)  # noqa: E731
    best_projection = max(recall(p) for p in projected)
    assert recall(image) > best_projection, (recall(image), best_projection)


def test_locking_the_trunk_leaves_its_features_unchanged(tmp_path: Path):
    """Freezing the trunk's first groups (and their BN statistics) must not change what it
    computes: open_clip's converter swapped timm's BatchNormAct2d for a plain BN, dropping
    every locked layer's activation."""
    model, _, _, _ = create_open_clip(tmp_path, open_clip_config(embed_dim=32, image_size=64))
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.encode_image(x)
        lock_image_trunk(model, unlocked_groups=1)
        model.eval()
        after = model.encode_image(x)
    torch.testing.assert_close(after, before)
    trainable = {n for n, p in model.visual.trunk.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("blocks.6.", "conv_head.", "bn2.")) for n in trainable)
