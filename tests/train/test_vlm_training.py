"""Training with a VLM backbone (tiny random Qwen2-VL / Idefics3 by path): LoRA steps whose
checkpoints hold adapters and heads only, an exact resume, and a 2-rank CPU DDP step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from pinclip.model import PinCLIP
from pinclip.model.vlm import is_base_key
from pinclip.train import load_config, train
from pinclip.train.checkpoint import list_checkpoints


def _vlm(tiny_overrides, tiny_vlms, family: str) -> list[str]:
    return tiny_overrides + [
        f"model.overrides.backbone=hf-vlm:{tiny_vlms[family]}",
        "model.overrides.image.image_size=64",
        "batch_size=8",
        "max_steps=4",
        "ckpt_every=2",
        "val_every=4",
    ]


def _weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def test_vlm_run_checkpoints_adapters_and_resumes_exactly(tiny_overrides, tiny_vlms, tmp_path):
    # LoRA dropout on (0.05): the resumed run draws the same masks from the restored RNG
    overrides = _vlm(tiny_overrides, tiny_vlms, "idefics3") + ["loss.board_weight=1"]
    ref = tmp_path / "ref"
    result = train(load_config(None, overrides + [f"run_dir={ref}"]))
    assert result.steps == 4 and torch.isfinite(torch.tensor(result.final_loss))
    saved = load_file(str(list_checkpoints(ref)[-1] / "model.safetensors"))
    assert not any(is_base_key(k) for k in saved) and any("lora_B" in k for k in saved)
    init = PinCLIP.from_pretrained(ref / "final").state_dict()
    # LoRA B starts at zero: trained adapters moved away from it
    assert any(v.abs().sum() > 0 for k, v in init.items() if "lora_B" in k)

    # the last checkpoint and final/ lost: the resume recomputes steps 3-4 bit for bit
    shutil.rmtree(ref / "final")
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(ref, resumed_dir)
    shutil.rmtree(list_checkpoints(resumed_dir)[-1])
    train(load_config(None, overrides + [f"run_dir={resumed_dir}"]), resume=True)
    shutil.rmtree(ref)
    again = train(load_config(None, overrides + [f"run_dir={ref}"]))
    a, b = _weights(ref), _weights(resumed_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    assert again.final_loss == result.final_loss


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_vlm_two_ranks_match_one_process(tiny_overrides, tiny_vlms, strategy, tmp_path):
    """2 CPU ranks (gloo), DDP replicas or FSDP2 shards (`--distributed fsdp`): the losses
    and the trained adapters and heads equal one process on the global batch."""
    # LoRA dropout off: each rank draws masks for its rows only, one process for all rows
    overrides = _vlm(tiny_overrides, tiny_vlms, "qwen2_vl")
    overrides += ["max_steps=2", "val_every=2", "model.overrides.vlm.lora_dropout=0"]
    single = tmp_path / "single"
    train(load_config(None, overrides + [f"run_dir={single}"]))
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "pinclip", "train", *overrides, f"run_dir={ddp}", "--distributed", strategy]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    def losses(run_dir):
        lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [x["loss"] for x in lines if "loss" in x]

    assert losses(ddp) == pytest.approx(losses(single), abs=1e-4)
    a, b = _weights(single), _weights(ddp)
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-4, rtol=1e-3, msg=name)
