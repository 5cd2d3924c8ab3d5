"""Training checkpoints hold data only: a pickle that asks for code is refused, never run."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pinclip.errors import PinclipError
from pinclip.train.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    UnsafeCheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)

SRC = Path(__file__).resolve().parents[2] / "src"


class _Payload:
    """Unpickling this calls open(marker, "w"): proof that code ran if the file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _state(step: int) -> dict:
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    np.random.seed(step)
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()},
        "step": step,
        "best_val_recall": 0.25,
        "config": {"seed": 0, "optim": {"lr": 1e-3}, "nbr_terms": ("pin", "image")},
    }


def test_round_trip_restores_every_part(tmp_path):
    state = _state(3)
    path = save_checkpoint(tmp_path, 3, state, keep_last=2)
    assert sorted(p.name for p in path.iterdir()) == [MODEL_FILE, STATE_FILE]
    back = load_checkpoint(path)
    assert back["step"] == 3 and back["config"] == state["config"]
    for key, value in state["model"].items():
        assert torch.equal(back["model"][key], value)
    moments = state["optimizer"]["state"][0]
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], moments["exp_avg"])
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.98)
    # The numpy RNG state comes back as numpy and really restores the generator.
    np.random.set_state(back["rng"]["numpy"])
    after_restore = np.random.rand(3)
    np.random.set_state(state["rng"]["numpy"])
    assert np.array_equal(after_restore, np.random.rand(3))
    torch.set_rng_state(back["rng"]["torch"])


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    save_checkpoint(tmp_path, 2, _state(2), keep_last=5)
    evil = save_checkpoint(tmp_path, 4, _state(4), keep_last=5)
    marker = tmp_path / "pwned"
    torch.save({"step": 4, "config": _Payload(marker)}, evil / STATE_FILE)

    with pytest.raises(UnsafeCheckpointError, match=r"state\.pt was refused.*io\.open"):
        load_checkpoint(evil)
    assert issubclass(UnsafeCheckpointError, PinclipError)
    # Resume stops on it instead of silently falling back to step 2.
    with pytest.raises(UnsafeCheckpointError):
        load_latest_checkpoint(tmp_path)
    assert not marker.exists(), "the checkpoint's payload ran"


def test_unsafe_checkpoint_stops_a_resume_in_train(tmp_path, tiny_overrides):
    from pinclip.train import load_config, train

    run = Path(next(o.split("=", 1)[1] for o in tiny_overrides if o.startswith("run_dir=")))
    train(load_config(None, tiny_overrides + ["max_steps=2"]))
    newest = list_checkpoints(run)[-1]
    marker = tmp_path / "pwned"
    torch.save({"step": 2, "x": _Payload(marker)}, newest / STATE_FILE)
    with pytest.raises(UnsafeCheckpointError):
        train(load_config(None, tiny_overrides), resume=True)
    # The CLI says so in one line (exit 2), without a traceback.
    done = subprocess.run(
        [sys.executable, "-m", "pinclip", "train", *tiny_overrides, "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "300"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error:" in done.stderr and "refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_corrupt_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    save_checkpoint(tmp_path, 2, _state(2), keep_last=5)
    newest = save_checkpoint(tmp_path, 4, _state(4), keep_last=5)
    data = (newest / STATE_FILE).read_bytes()
    (newest / STATE_FILE).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="pinclip.train.checkpoint"):
        assert load_latest_checkpoint(tmp_path)["step"] == 2
    assert "skipping unreadable checkpoint" in caplog.text and "step-00000004" in caplog.text


def test_keep_last_prunes_whole_folders(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, _state(step), keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]


def test_no_unsafe_torch_load_in_the_package():
    hits = [
        f"{p.relative_to(SRC)}:{n}"
        for p in SRC.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "weights_only=False" in line.replace(" ", "")
    ]
    assert not hits, f"torch.load(weights_only=False) can run code from a file: {hits}"
