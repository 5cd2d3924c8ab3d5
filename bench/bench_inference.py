"""Embedding inference: ONNX Runtime fp32 and int8 against PyTorch eager fp32, and the share
of the machine's peak matmul FLOP/s each reaches.

    python bench/bench_inference.py --model runs/emoji-small/best --catalog data/emoji

Workloads: the image tower (pixels -> image_emb) and the whole pin embedding (image + text ->
image/text/pin embeddings), batches of 32 catalog pins, timed by `bench_serving.throughput` (the serving
benchmark's measurement: backends interleaved repeat by repeat, median of 5). FLOPs per pin are counted on the eager model with
torch.utils.flop_counter.FlopCounterMode (a multiply-add = 2 FLOPs); the peak is the median
FLOP/s of a 2048×2048 fp32 torch matmul timed in the same run, same threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch.utils.flop_counter import FlopCounterMode

from _common import REPEATS, markdown_table, write_result
from bench_serving import throughput
from pinclip.serve import OnnxEmbedder, TorchEmbedder, catalog_samples, export_onnx


def peak_matmul_flops(n: int = 2048, repeats: int = REPEATS) -> float:
    """Median FLOP/s of an n×n fp32 matmul: the machine's practical peak for this run."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times))


def flops_per_pin(eager: TorchEmbedder, pixels: np.ndarray, texts: list[str]) -> dict[str, float]:
    """FLOPs of one pin through the image tower and through the whole pin embedding."""
    out = {}
    for name, fn in {
        "image_tower": lambda: eager.embed_images(pixels),
        "pin_embedding": lambda: eager.embed_pins(pixels, texts),
    }.items():
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        out[name] = counter.get_total_flops() / len(pixels)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/emoji-small/best")
    ap.add_argument("--catalog", default="data/emoji")
    ap.add_argument("--pins", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    console = Console()
    torch.set_num_threads(args.threads)
    samples = catalog_samples(args.catalog, args.pins, seed=0)
    result: dict = {"model": args.model, "pins": args.pins, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        eager = TorchEmbedder.load(args.model)
        backends = {"eager_fp32": eager}
        export_onnx(args.model, Path(tmp) / "fp32", samples, int8=False)
        backends["onnx_fp32"] = OnnxEmbedder(Path(tmp) / "fp32", threads=args.threads)
        try:
            report = export_onnx(args.model, Path(tmp) / "int8", samples, int8=True)
            backends["onnx_int8"] = OnnxEmbedder(Path(tmp) / "int8", threads=args.threads)
            result["int8_graphs"] = report.graphs
            result["int8_parity_min_cosine"] = report.parity
        except Exception as err:  # the int8 export refuses when parity fails: record why
            result["int8_error"] = f"{type(err).__name__}: {err}"
            console.print(f"[yellow]int8 export failed: {err}[/]")
        pixels = np.stack([eager.preprocess(img) for img, _ in samples]).astype(np.float32)
        texts = [t for _, t in samples]
        flops = flops_per_pin(eager, pixels[: args.batch], texts[: args.batch])
        peak_before = peak_matmul_flops()
        rates = {
            work: throughput(backends, task, pixels, texts, args.batch, args.repeats)[0]
            for work, task in (("image_tower", "image"), ("pin_embedding", "pin"))
        }
        peak = float(np.median([peak_before, peak_matmul_flops()]))
    rows = []
    for work, by_backend in rates.items():
        for name, pins_s in by_backend.items():
            speedup = pins_s / by_backend["eager_fp32"]
            share = pins_s * flops[work] / peak
            result[f"{work}/{name}"] = {
                "pins_per_s": pins_s,
                "speedup_over_eager": speedup,
                "flops_per_s": pins_s * flops[work],
                "share_of_peak": share,
            }
            rows.append([work, name, pins_s, speedup, pins_s * flops[work] / 1e9, f"{share:.1%}"])
    result |= {"flops_per_pin": flops, "peak_matmul_flops_per_s": peak}
    table = markdown_table(
        ["workload", "backend", "pins/s", "× eager", "GFLOP/s", "share of peak"], rows
    )
    table += f"\nFLOPs per pin: image tower {flops['image_tower'] / 1e9:.3f} G, whole pin {flops['pin_embedding'] / 1e9:.3f} G; peak matmul {peak / 1e9:.1f} GFLOP/s ({args.threads} threads).\n"
    console.print(table)
    write_result("inference", result, table)


if __name__ == "__main__":
    main()
