"""Forward+backward throughput of a PinCLIP preset on CPU: cached frozen stem vs unfrozen stem.

    python bench/bench_model.py                       # small preset, batch 64, 2 threads
    python bench/bench_model.py --end-to-end --repeats 7 --out bench/results/model.json

Each mode times `repeats` training steps (forward, a CLIP-style loss, backward) after one
warm-up step and reports the median and the fastest step (the least disturbed by other
load). The text encoder is frozen with cached states in the first two modes so that they
differ only in the stem; `--end-to-end` adds a mode that trains everything from pixels and
token ids.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from pinclip.model import PinCLIP, PinCLIPOutput

WORDS = [
    "red",
    "fox",
    "snow",
    "cabin",
    "espresso",
    "cup",
    "mountain",
    "garden",
    "recipe",
    "dress",
    "vintage",
    "lamp",
    "wood",
    "sea",
]


def captions(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 24, (n,), generator=g).tolist()
    return [
        " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (k,), generator=g))
        for k in lengths
    ]


def clip_loss(out: PinCLIPOutput, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE image<->text plus pin<->image: touches every head."""
    labels = torch.arange(out.pin_emb.shape[0])
    loss = 0.0
    for a, b in ((out.image_emb, out.text_emb), (out.pin_emb, out.image_emb)):
        logits = scale.exp() * a @ b.T
        loss = loss + (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return loss


def time_steps(model: PinCLIP, inputs: dict, repeats: int) -> list[float]:
    model.train()
    times = []
    for i in range(repeats + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        loss = clip_loss(model(**inputs), model.logit_scale)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--end-to-end", action="store_true", help="also time a fully unfrozen model")
    p.add_argument("--out", type=Path, default=Path("bench/results/bench_model.json"))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frozen = PinCLIP.from_preset(args.preset, freeze_stem=True, freeze_text_encoder=True)
    size = frozen.config.image.image_size
    images = torch.randn(args.batch, 3, size, size)
    text = frozen.tokenize(captions(args.batch, seed=0))
    with torch.no_grad():  # what FeatureStore would read from disk
        features = [f.clone() for f in frozen.stem_features(images)]
        states = {k: v.clone() for k, v in frozen.text_encoder_states(text).items()}

    modes = {
        "frozen stem, cached features": (
            frozen,
            {"image_features": features, "text_states": states},
        ),
        "unfrozen stem (from pixels)": (
            PinCLIP.from_preset(args.preset, freeze_stem=False, freeze_text_encoder=True),
            {"images": images, "text_states": states},
        ),
    }
    if args.end_to_end:
        modes["everything unfrozen"] = (
            PinCLIP.from_preset(args.preset, freeze_stem=False, freeze_text_encoder=False),
            {"images": images, "text": text},
        )

    build_s = []  # how long the `tiny` test preset takes to build (was a timed unit test)
    for _ in range(args.repeats):
        start = time.perf_counter()
        PinCLIP.from_preset("tiny")
        build_s.append(time.perf_counter() - start)

    rows = []
    for mode, (model, inputs) in modes.items():
        times = time_steps(model, inputs, args.repeats)
        median = statistics.median(times)
        rows.append(
            {
                "mode": mode,
                "trainable_params": model.num_parameters(trainable_only=True),
                "median_step_s": round(median, 4),
                "samples_per_s": round(args.batch / median, 2),
                # The fastest step is the least disturbed by other processes on a shared machine.
                "best_samples_per_s": round(args.batch / min(times), 2),
                "step_times_s": [round(t, 4) for t in times],
            }
        )

    table = Table(
        title=f"PinCLIP '{args.preset}' forward+backward, batch {args.batch}, "
        f"{args.threads} CPU threads, {size}px, median of {args.repeats}"
    )
    for col in ("mode", "trainable params", "median step (s)", "samples/s", "best samples/s"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for r in rows:
        table.add_row(
            r["mode"],
            f"{r['trainable_params'] / 1e6:.2f}M",
            f"{r['median_step_s']:.3f}",
            f"{r['samples_per_s']:.1f}",
            f"{r['best_samples_per_s']:.1f}",
        )
    Console().print(table)
    Console().print(f"tiny preset build: median {statistics.median(build_s):.3f}s")

    result = {
        "preset": args.preset,
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "image_size": size,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_after": round(os.getloadavg()[0], 2),  # other processes skew timings
        "results": rows,
        "tiny_preset_build_s_median": round(statistics.median(build_s), 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
