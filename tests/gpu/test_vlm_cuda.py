"""A VLM backbone on CUDA: a bf16 LoRA step (bf16 base, gradient checkpointing) and serving
embeddings that match the CPU's. Marked `gpu`; skipped with a reason without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinclip.model import PinCLIP, preset_config
from pinclip.train import load_config, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_vlm_bf16_lora_step_on_cuda(tiny_overrides, tiny_vlms, tmp_path):
    overrides = tiny_overrides + [
        f"model.overrides.backbone=hf-vlm:{tiny_vlms['qwen2_vl']}",
        "model.overrides.image.image_size=64",
        "model.overrides.vlm.base_dtype=bf16",
        "model.overrides.vlm.gradient_checkpointing=true",
        "model.overrides.dropout=0.0",
        "device=cuda",
        "precision=bf16",
        "max_steps=2",
        "val_every=2",
        "ckpt_every=2",
    ]
    torch.cuda.reset_peak_memory_stats()
    result = train(load_config(None, overrides))
    assert result.steps == 2 and np.isfinite(result.final_loss)
    print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")


def test_vlm_cuda_embeddings_match_cpu(tiny_vlms):
    cfg = preset_config(
        "tiny", **{"backbone": f"hf-vlm:{tiny_vlms['idefics3']}", "image.image_size": 64}
    )
    model = PinCLIP(cfg, seed=0).eval()
    images, text = torch.rand(3, 3, 64, 64), model.tokenize(["a", "red fox", "cabin at night"])
    with torch.no_grad():
        cpu = model(images=images, text=text).pin_emb
        model.cuda()
        gpu = model(images=images.cuda(), text={k: v.cuda() for k, v in text.items()}).pin_emb
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-2)
