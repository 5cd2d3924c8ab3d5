"""Training survives SIGKILL anywhere, including in the middle of writing a checkpoint.

The killed runs are real `pinclip train` processes; "the same weights" means bit-identical
`final/model.safetensors` against one uninterrupted run with the same config. (The NaN case is
tests/train/test_recipe.py::test_nan_loss_stops_and_keeps_last_good_checkpoint.)
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pinclip.train import load_config, train
from pinclip.train.checkpoint import list_checkpoints, load_latest_checkpoint

from .conftest import record


def _overrides(catalog: Path, cache: Path, max_steps: int, ckpt_every: int) -> list[str]:
    return [
        f"data.catalog={catalog}",
        f"data.cache_dir={cache}",
        "data.build_if_missing=null",
        "model.preset=tiny",
        "batch_size=16",
        f"max_steps={max_steps}",
        f"ckpt_every={ckpt_every}",
        f"val_every={max_steps}",
        "keep_last=3",
        "tensorboard=false",
        "optim.warmup_steps=2",
        "threads=1",
    ]


def _same_weights(a: Path, b: Path) -> int:
    wa, wb = (load_file(str(d / "final" / "model.safetensors")) for d in (a, b))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs from the uninterrupted run"
    return len(wa)


# Runs training with torch.save slowed to a crawl on one checkpoint: half the bytes are
# written and synced, then it stalls, so the parent's SIGKILL lands mid-write for certain.
STALLING_TRAIN = """
import io, sys, time
from pinclip.train import checkpoint, load_config, train
real_save, calls = checkpoint.torch.save, [0]
def stalling_save(obj, fh, *a, **k):
    calls[0] += 1
    if calls[0] != int(sys.argv[1]):
        return real_save(obj, fh, *a, **k)
    buf = io.BytesIO(); real_save(obj, buf); data = buf.getvalue()
    fh.write(data[: len(data) // 2]); fh.flush()
    print("MID-SAVE", len(data), flush=True)
    time.sleep(600)
checkpoint.torch.save = stalling_save
train(load_config(None, sys.argv[2:]))
"""


@pytest.mark.slow
def test_kill_mid_checkpoint_write_leaves_no_half_checkpoint(tiny_catalog, tmp_path):
    overrides = _overrides(tiny_catalog, tmp_path / "cache", max_steps=6, ckpt_every=2)
    reference = tmp_path / "ref"
    train(load_config(None, [*overrides, f"run_dir={reference}"]))

    run = tmp_path / "killed"
    cmd = [sys.executable, "-c", STALLING_TRAIN, "2", *overrides, f"run_dir={run}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the step-4 save is half written
        assert line.startswith("MID-SAVE"), f"training ended without reaching the save: {line!r}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()

    partial = list((run / "checkpoints").glob(".step-00000004.*.tmp"))
    assert len(partial) == 1
    assert 0 < (partial[0] / "state.pt").stat().st_size < int(line.split()[1])
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002"]
    assert load_latest_checkpoint(run)["step"] == 2  # the half-written file is never picked

    train(load_config(None, [*overrides, f"run_dir={run}"]), resume=True)
    tensors = _same_weights(reference, run)
    assert not list((run / "checkpoints").glob(".*.tmp")), "stale temp folder left behind"
    record("training kill mid-save", kills_survived=1, tensors_bit_identical=tensors)


def _latest_step(run_dir: Path) -> int:
    files = list_checkpoints(run_dir)
    return int(files[-1].stem.split("-")[1]) if files else 0


@pytest.mark.soak
def test_five_sigkills_then_resume_equals_uninterrupted(tiny_catalog, tmp_path):
    """SIGKILL at 5 random moments (mid-step, mid-validation or mid-save), resuming each time."""
    max_steps = 16
    overrides = _overrides(tiny_catalog, tmp_path / "cache", max_steps=max_steps, ckpt_every=1)
    overrides[overrides.index(f"val_every={max_steps}")] = "val_every=4"
    reference = tmp_path / "ref"
    train(load_config(None, [*overrides, f"run_dir={reference}"]))

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pinclip", "train", *overrides, f"run_dir={run}", "--resume"]
    rng = random.Random(2024)
    kill_steps = []
    for kill in range(5):
        # Spread the kills over the run: each lands at least one step after the last one.
        target = min(_latest_step(run) + rng.randint(1, 3), max_steps - 5 + kill)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        try:
            while _latest_step(run) < target:
                assert proc.poll() is None, f"run {kill} ended before it could be killed"
                assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert not (run / "final").exists()
        kill_steps.append(_latest_step(run))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tensors = _same_weights(reference, run)
    record(
        "training 5x SIGKILL + resume",
        kills_survived=5,
        checkpoint_step_at_each_kill=kill_steps,
        max_steps=max_steps,
        tensors_bit_identical=tensors,
    )
