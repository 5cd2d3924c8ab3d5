"""End-to-end training on a tiny catalog, and what happens to bad input and failures."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
import torch

from pinclip.data.catalog import CatalogError
from pinclip.model import PinCLIP
from pinclip.train import TrainingError, load_config, step, train
from pinclip.train import checkpoint as ckpt_module
from pinclip.train.checkpoint import list_checkpoints, load_checkpoint


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_writes_everything_a_user_opens(tiny_overrides, tmp_path):
    result = train(load_config(None, tiny_overrides))
    run = tmp_path / "run"
    assert result.steps == 6
    assert (run / "config.yaml").is_file()
    assert [p.name for p in list_checkpoints(run)] == ["step-00000004", "step-00000006"]
    records = _records(run)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if "val_recall@10" in r] == [3, 6]
    assert 0.0 <= result.best_val_recall <= 1.0
    model = PinCLIP.from_pretrained(run / "final")
    assert model.config.name == "tiny"


def test_lambda_zero_runs_without_neighbor_terms(tiny_overrides, tmp_path):
    result = train(load_config(None, tiny_overrides + ["loss.nbr_weight=0", "max_steps=2"]))
    steps = [r for r in _records(tmp_path / "run") if "loss" in r]
    assert result.steps == 2 and len(steps) == 2
    assert all("it" in r and "fuse" in r for r in steps)  # image-text and fusion terms only
    assert not any(k.startswith("nbr") for r in steps for k in r)  # neighbors never embedded
    assert all(r["loss"] == pytest.approx(r["it"] + 0.5 * r["fuse"], rel=1e-5) for r in steps)


def test_missing_catalog_is_a_clear_error(tiny_overrides, tmp_path):
    overrides = tiny_overrides + [f"data.catalog={tmp_path / 'nowhere'}"]
    with pytest.raises(CatalogError, match="no such catalog.*pinclip catalog build emoji"):
        train(load_config(None, overrides))


def test_rejected_rows_are_skipped_and_counted(tiny_catalog, tiny_overrides, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_catalog, broken)
    victim = sorted((broken / "images").rglob("*.png"))[0]
    victim.unlink()
    train(load_config(None, tiny_overrides + [f"data.catalog={broken}", "max_steps=1"]))
    rejects = [json.loads(x) for x in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()]
    assert any(r["file"] == "pins.parquet" and victim.name in json.dumps(r) for r in rejects)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_overrides, tmp_path, monkeypatch):
    real_loss = step.pinclip_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, parts = real_loss(*args, **kwargs)
        return (loss * float("nan"), parts) if calls["n"] == 5 else (loss, parts)

    monkeypatch.setattr(step, "pinclip_loss", poisoned)
    with pytest.raises(TrainingError, match="loss became nan at step 4.*--resume"):
        train(load_config(None, tiny_overrides))
    kept = list_checkpoints(tmp_path / "run")
    assert [p.name for p in kept] == ["step-00000002", "step-00000004"]
    state = load_checkpoint(kept[-1])
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_failed_checkpoint_write_leaves_previous_intact(tiny_overrides, tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def disk_full(obj, fh, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the step-4 checkpoint: write a little, then the disk is full
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", disk_full)
    train(load_config(None, tiny_overrides))  # warns and goes on
    run = tmp_path / "run"
    names = [p.name for p in list_checkpoints(run)]
    assert names == ["step-00000002", "step-00000006"]
    assert not list((run / "checkpoints").glob(".*tmp"))
    assert load_checkpoint(run / "checkpoints" / "step-00000002")["step"] == 2


def test_the_loop_reads_in_one_sitting_and_no_public_function_is_long():
    """The recipe's shape (setup → loop → teardown) stays readable: the loop ≤ 80 lines and
    no public function anywhere in pinclip over 120."""
    import ast
    import inspect
    from pathlib import Path

    import pinclip
    from pinclip.train import recipe

    assert len(inspect.getsource(recipe.loop).splitlines()) <= 80
    long = []
    for path in Path(pinclip.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            public = isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
            if public and node.end_lineno - node.lineno + 1 > 120:
                long.append(f"{path.name}:{node.name}")
    assert not long, long
