"""CUDA paths (autocast, grad scaler, pinned non-blocking copies, CUDA RNG in checkpoints).

Marked `gpu`; skipped with a reason where no CUDA device is visible (CI runs on CPU)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from pinclip.train import load_config, train
from pinclip.train.checkpoint import list_checkpoints, load_checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_cuda_training_checkpoints_cuda_rng_and_scaler(tiny_overrides, tmp_path, precision):
    overrides = tiny_overrides + ["max_steps=2", "ckpt_every=2", "val_every=2", "device=cuda"]
    result = train(load_config(None, overrides + [f"precision={precision}"]))
    assert result.steps == 2
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert len(state["rng"]["cuda"]) == torch.cuda.device_count()
    assert bool(state["scaler"]) == (precision == "fp16")


def test_cuda_resume_is_exact(tiny_overrides, tmp_path):
    overrides = tiny_overrides + ["device=cuda", "max_steps=4", "ckpt_every=2", "val_every=4"]
    whole = train(load_config(None, overrides))
    run = tmp_path / "run"
    final = load_file(str(run / "final" / "model.safetensors"))
    shutil.rmtree(list_checkpoints(run)[-1])  # back to step 2, as if killed after it
    shutil.rmtree(run / "final")
    resumed = train(load_config(None, overrides), resume=True)
    assert resumed.steps == whole.steps == 4
    again = load_file(str(run / "final" / "model.safetensors"))
    for name in final:
        assert torch.equal(final[name], again[name]), name
