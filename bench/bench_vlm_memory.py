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
layer = a * hidden + b * intermediate, fp32 here), which `docs/model.md` uses with the
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
