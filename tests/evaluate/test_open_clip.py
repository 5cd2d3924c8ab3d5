"""The open_clip baseline: open_clip's own training loop for a few steps, then evaluation."""

from __future__ import annotations

import json

from pinclip.evaluate.baselines.base import check_embeddings
from pinclip.evaluate.baselines.open_clip import OpenCLIPEmbedder, train_open_clip
from pinclip.evaluate.data import EvalData
from pinclip.evaluate.tasks import evaluate_embedder
from pinclip.train import load_config

from .conftest import tiny_run_overrides


def test_open_clip_trains_on_warm_pins_and_evaluates(eval_catalog, tmp_path):
    cfg = load_config(
        None,
        tiny_run_overrides(eval_catalog, tmp_path / "pc", tmp_path / "cache") + ["batch_size=32"],
    )
    run = train_open_clip(cfg, tmp_path / "oc")
    info = json.loads((run / "train_info.json").read_text())
    data = EvalData.from_config(cfg)
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
