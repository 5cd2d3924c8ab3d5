"""What a sample costs on a VLM backbone: tokens per pass and activation memory, measured on CPU
with tiny random VLMs, and the fit that extrapolates them to a real model's size.

    python bench/bench_vlm_memory.py --out bench/results/vlm_memory.json

For each setting (image resolution, text budget, neighbor rows in the batch, gradient
checkpointing) one training forward of a batch runs with LoRA adapters on a tiny Qwen2-VL,
and every tensor autograd saves for the backward pass is counted (bytes, de-duplicated by
storage): that is the activation memory a step holds per sample, the part of GPU memory
that grows with the batch. The tokens of each pass (image alone, text alone, joint) come
from the model's own processor and chat template.

Two decoder shapes (intermediate size 64 and 128, same hidden size) and two depths separate
the per-token, per-layer cost into a hidden-size part and an MLP part (bytes per token per
layer = a * hidden + b * intermediate, fp32 here), which `docs/foundation.md` uses with the
token counts of a real 2B model to estimate its memory per sample in bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from pinclip.model import PinCLIP, preset_config
from pinclip.model.vlm_tiny import build_tiny_vlm

TEXTS = ["a red fox in the snow on a winter board of animals and travel photos"] * 64


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves while `fn` runs."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def measure(spec: str, *, image_size: int, max_length: int, rows: int, checkpointing: bool):
    cfg = preset_config(
        "tiny",
        backbone=spec,
        **{
            "image.image_size": image_size,
            "text.max_length": max_length,
            "vlm.gradient_checkpointing": checkpointing,
        },
    )
    model = PinCLIP(cfg, seed=0).train()
    batch = 4 * rows  # rows = 2: every anchor brings its neighbor row (same adapters)
    images = torch.rand(batch, 3, image_size, image_size)
    text = model.tokenize(TEXTS[:batch])

    def step():
        out = model(images=images, text=text)
        (out.pin_emb @ out.image_emb.T).logsumexp(1).mean().backward()

    step()  # warm-up
    t0 = time.perf_counter()
    total = saved_bytes(step)
    seconds = time.perf_counter() - t0
    text_tokens = int(text["attention_mask"].sum(1).float().mean())
    passes = {k: model.vlm.prompt_tokens(k) for k in ("image", "text", "joint")}
    tokens = passes["image"] + passes["text"] + passes["joint"] + 2 * text_tokens
    return {
        "image_size": image_size,
        "max_length": max_length,
        "rows_per_anchor": rows,
        "gradient_checkpointing": checkpointing,
        "visual_tokens": model.vlm.visual_tokens,
        "prompt_tokens": passes,
        "text_tokens": text_tokens,
        "tokens_per_pin": tokens,
        "activation_bytes_per_anchor": total / (batch / rows),
        "activation_bytes_per_token": total / batch / tokens,
        "cpu_seconds_per_anchor": seconds / (batch / rows),
    }


#: Qwen2-VL-2B-Instruct's shapes (its config.json) and the assumptions of the estimate.
QWEN2_VL_2B = {
    "lm": {"hidden": 1536, "intermediate": 8960, "layers": 28, "params": 1.54e9},
    "vision": {"hidden": 1280, "intermediate": 5120, "layers": 32, "params": 0.67e9},
    "image_size": 448,
    "patch": 14,
    "merge": 2,
    "text_tokens": 64,
    "system_prompt_tokens": 21,  # the real template's default system message
    "gpu_bf16_flops": 989e12,  # H100 SXM dense bf16 peak
    "mfu": 0.35,  # assumed model FLOPs utilisation
}


def estimate_2b(tiny: dict, a: float, b: float) -> dict:
    """Activation memory and time per anchor of Qwen2-VL-2B from the tiny model's measured
    per-token, per-layer cost (a * hidden + b * intermediate bytes in fp32, halved for bf16)
    and token counts (the tiny prompts' overhead plus the real visual tokens)."""
    q = QWEN2_VL_2B
    patches = (q["image_size"] // q["patch"]) ** 2
    visual = patches // q["merge"] ** 2
    overhead = {
        kind: n - (tiny["visual_tokens"] if kind != "text" else 0) + q["system_prompt_tokens"]
        for kind, n in tiny["prompt_tokens"].items()
    }
    lm_tokens = overhead["image"] + overhead["text"] + overhead["joint"]
    lm_tokens += 2 * visual + 2 * q["text_tokens"]
    vision_tokens = 2 * patches  # the image and joint passes each encode the image

    def per_layer(part: dict) -> float:  # bytes per token per layer, bf16
        return (a * part["hidden"] + b * part["intermediate"]) / 2

    lm, vis = q["lm"], q["vision"]
    full = lm_tokens * lm["layers"] * per_layer(lm) + vision_tokens * vis["layers"] * per_layer(vis)
    # checkpointing keeps each layer's input (hidden, bf16) and recomputes the rest
    ckpt = (
        lm_tokens * lm["layers"] * lm["hidden"] * 2
        + vision_tokens * vis["layers"] * vis["hidden"] * 2
    )
    flops_fwd = 2 * (lm["params"] * lm_tokens + vis["params"] * vision_tokens)
    rate = q["gpu_bf16_flops"] * q["mfu"]
    rows = 2  # anchor + its neighbor row (loss.nbr_weight > 0)
    gib = 2**30
    return {
        "assumptions": q,
        "lm_tokens_per_pin": lm_tokens,
        "vision_patches_per_pin": vision_tokens,
        "activation_gib_per_anchor": rows * full / gib,
        "activation_gib_per_anchor_checkpointed": rows * ckpt / gib,
        "base_weights_gib_bf16": (lm["params"] + vis["params"]) * 2 / gib,
        # frozen base: forward + input-gradient backward (~2x forward), no weight gradients;
        # checkpointing recomputes the forward once more
        "train_hours_per_1e6_anchors": rows * 3 * flops_fwd * 1e6 / rate / 3600,
        "train_hours_per_1e6_anchors_checkpointed": rows * 4 * flops_fwd * 1e6 / rate / 3600,
        "embed_hours_per_1e6_pins": flops_fwd * 1e6 / rate / 3600,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/vlm_memory.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix="vlm-bench-"))
    rows = []
    base = "hf-vlm:" + str(build_tiny_vlm("qwen2_vl", root / "base", image_size=128))
    for image_size, max_length, nbr, ckpt in [
        (64, 16, 1, False),
        (64, 64, 1, False),
        (128, 16, 1, False),
        (64, 16, 2, False),
        (64, 16, 1, True),
    ]:
        rows.append(
            {
                "model": "tiny qwen2_vl h32 i64 L2",
                **measure(
                    base, image_size=image_size, max_length=max_length, rows=nbr, checkpointing=ckpt
                ),
            }
        )
    # the decoder's per-token, per-layer cost: vary the MLP width and the depth
    fit = {}
    for name, lm in {
        "h32 i64 L2": {},
        "h32 i128 L2": {"intermediate_size": 128},
        "h32 i64 L4": {"num_hidden_layers": 4},
        "h64 i64 L2": {"hidden_size": 64},
    }.items():
        spec = "hf-vlm:" + str(build_tiny_vlm("qwen2_vl", root / name.replace(" ", "-"), **lm))
        fit[name] = measure(spec, image_size=64, max_length=16, rows=1, checkpointing=False)
    per_layer = (
        fit["h32 i64 L4"]["activation_bytes_per_token"]
        - fit["h32 i64 L2"]["activation_bytes_per_token"]
    ) / 2
    b = (
        fit["h32 i128 L2"]["activation_bytes_per_token"]
        - fit["h32 i64 L2"]["activation_bytes_per_token"]
    ) / (2 * 64)
    a = (per_layer - b * 64) / 32
    result = {
        "estimate_qwen2_vl_2b": estimate_2b(rows[0], a, b),
        "rows": rows,
        "decoder_fit": {
            "configs": {k: v["activation_bytes_per_token"] for k, v in fit.items()},
            "bytes_per_token_per_layer_tiny": per_layer,
            "a_bytes_per_hidden_unit": a,
            "b_bytes_per_mlp_unit": b,
            "note": "fp32 on CPU; bytes per token per decoder layer = a*hidden + b*intermediate",
        },
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
