"""Devices and precision: config values, CPU autocast (bf16, fp16 + grad scaler), what a
checkpoint keeps, and step counts in optimizer steps under gradient accumulation."""

from __future__ import annotations

import json

import pytest
import torch

from pinclip.errors import ConfigError
from pinclip.model.devices import resolve_device
from pinclip.train import load_config, train
from pinclip.train.checkpoint import list_checkpoints, load_checkpoint
from pinclip.train.recipe import autocast_dtype


def test_device_names() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto", local_rank=0) == (
        "cuda:0" if torch.cuda.is_available() else "cpu"
    )
    with pytest.raises(ConfigError, match="use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda:1")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS"):
            resolve_device("mps")


def test_precision_names() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", cuda) == torch.bfloat16
    assert autocast_dtype("fp16", cpu) == torch.float16
    with pytest.raises(ConfigError, match="precision='int4'"):
        autocast_dtype("int4", cpu)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cpu_autocast_trains_and_checkpoints_the_scaler(tiny_overrides, tmp_path, precision):
    overrides = tiny_overrides + ["max_steps=2", "ckpt_every=2", "val_every=2"]
    result = train(load_config(None, overrides + [f"precision={precision}", "device=cpu"]))
    assert result.steps == 2 and result.final_loss == result.final_loss  # not NaN
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert set(state["rng"]) >= {"torch", "numpy"}
    if precision == "fp16":  # the grad scaler's scale and growth tracker resume with the run
        assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]
    else:
        assert state["scaler"] == {}


def test_epoch_counts_are_optimizer_steps(tiny_overrides, tmp_path):
    # 204 warm anchors / 16 = 12 micro-batches per epoch = 6 optimizer steps at accum 2
    overrides = [o for o in tiny_overrides if not o.startswith(("max_steps", "val_every"))]
    train(load_config(None, overrides + ["epochs=2", "optim.accum_steps=2", "ckpt_every=100"]))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "loss" in x]
    assert steps == list(range(1, 13))
    assert [x["step"] for x in lines if "val_recall@10" in x] == [6, 12]
