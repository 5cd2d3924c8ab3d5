"""Trackers: metrics.jsonl always; TensorBoard warns when asked for and missing; MLflow."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from pinclip.train import load_config, train
from pinclip.train.tracking import open_trackers


def test_tensorboard_asked_for_and_missing_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    with caplog.at_level(logging.WARNING, logger="pinclip.train.tracking"):
        trackers = open_trackers(tmp_path, 0, enabled=True, tensorboard=True)
    assert "pip install 'pinclip[tensorboard]'" in caplog.text
    trackers.write({"step": 1, "loss": 2.5})
    trackers.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.5}
    assert not (tmp_path / "tensorboard").exists()


def test_tensorboard_writes_event_files(tmp_path, caplog):
    pytest.importorskip("tensorboard")
    with caplog.at_level(logging.WARNING):
        trackers = open_trackers(tmp_path, 0, enabled=True, tensorboard=True)
    trackers.write({"step": 1, "loss": 2.5, "lr": 0.1})
    trackers.close()
    assert not caplog.text
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_other_ranks_track_nothing(tmp_path):
    trackers = open_trackers(tmp_path, 0, enabled=False, tensorboard=True)
    trackers.write({"step": 1, "loss": 1.0})
    assert not list(tmp_path.iterdir())


def test_mlflow_gets_params_and_every_step_and_a_resume_continues_the_run(
    tiny_overrides, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store: no server in tests
    uri = f"file:{tmp_path / 'mlruns'}"
    overrides = [*tiny_overrides, f"mlflow={uri}"]
    train(load_config(None, [*overrides, "max_steps=4", "ckpt_every=2"]))
    run_id = (tmp_path / "run" / "mlflow_run_id").read_text().strip()
    train(load_config(None, [*overrides, "max_steps=6", "ckpt_every=2"]), resume=True)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params["optim.lr"] and run.data.params["model.preset"] == "tiny"
    assert run.info.status == "FINISHED"
    steps = sorted({m.step for m in client.get_metric_history(run_id, "loss")})
    assert steps == [1, 2, 3, 4, 5, 6]
    assert client.get_metric_history(run_id, "val_recall_at_10")
