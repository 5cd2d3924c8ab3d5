"""Serving throughput: ONNX Runtime fp32 and int8 vs PyTorch eager, and index quality/speed.

    python bench/bench_serving.py --model runs/emoji-small/best --catalog data/emoji \
        --out bench/results/serving.json

The model is exported twice (fp32, and --int8 with the per-part choice by measurement), each
export parity-checked on `--parity-pins` catalog pins (half of them calibrate int8). The three
backends then embed the same catalog pins in the same run, interleaved repeat by repeat so
machine load hits them alike, after a warm-up batch, with the same thread count: the image
tower alone (pixels -> image_emb) and the whole pin (image + text -> all three embeddings).
Ratios are the median pins/s over `--repeats` passes, over eager's. The index part builds
HNSW (and IVF-PQ) over the eager pin embeddings and reports recall@10 and queries per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from pinclip.serve import OnnxEmbedder, TorchEmbedder, catalog_samples, export_onnx
from pinclip.serve.index import make_index, normalize, recall_at_k


def embed_all(embedder, task: str, pixels: np.ndarray, texts: list[str], batch: int) -> dict:
    """Embed every sample in batches; `task` is "image" (the image tower) or "pin"."""
    parts = []
    for i in range(0, len(pixels), batch):
        if task == "image":
            parts.append({"image_emb": embedder.embed_images(pixels[i : i + batch])})
        else:
            parts.append(embedder.embed_pins(pixels[i : i + batch], texts[i : i + batch]))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def throughput(embedders: dict, task: str, pixels, texts, batch: int, repeats: int):
    """Median pins/s per embedder over `repeats` interleaved passes, and their embeddings."""
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    out = {}
    for embedder in embedders.values():  # warm-up
        embed_all(embedder, task, pixels[:batch], texts[:batch], batch)
    for _ in range(repeats):
        for name, embedder in embedders.items():
            start = time.perf_counter()
            out[name] = embed_all(embedder, task, pixels, texts, batch)
            rates[name].append(len(pixels) / (time.perf_counter() - start))
    return {name: float(np.median(r)) for name, r in rates.items()}, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/emoji-small/best")
    ap.add_argument("--catalog", default="data/emoji")
    ap.add_argument("--pins", type=int, default=64, help="pins embedded per timed pass")
    ap.add_argument("--parity-pins", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    console = Console()
    torch.set_num_threads(args.threads)
    samples = catalog_samples(args.catalog, max(args.pins, args.parity_pins), seed=0)
    parity_set = samples[: args.parity_pins]
    with tempfile.TemporaryDirectory() as tmp:
        console.print("exporting fp32 and int8 ...")
        fp32_report = export_onnx(args.model, Path(tmp) / "fp32", parity_set)
        report = export_onnx(args.model, Path(tmp) / "int8", parity_set, int8=True)
        eager = TorchEmbedder.load(args.model)
        embedders = {
            "eager": eager,
            "onnx_fp32": OnnxEmbedder(Path(tmp) / "fp32", threads=args.threads),
            "onnx_int8": OnnxEmbedder(Path(tmp) / "int8", threads=args.threads),
        }
        pixels = np.stack([eager.preprocess(img) for img, _ in samples[: args.pins]])
        pixels = pixels.astype(np.float32)
        texts = [t for _, t in samples[: args.pins]]
        rates, cosines = {}, {}
        for task in ("image", "pin"):
            console.print(f"timing {task} embedding ...")
            rates[task], outs = throughput(embedders, task, pixels, texts, args.batch, args.repeats)
            ref = outs["eager"]
            cosines[task] = {
                name: {k: float((normalize(ref[k]) * normalize(got[k])).sum(1).min()) for k in ref}
                for name, got in outs.items()
                if name != "eager"
            }
            if task == "pin":
                pin_ref = ref
    ratios = {
        task: {f"{name}_over_eager": r[name] / r["eager"] for name in r if name != "eager"}
        for task, r in rates.items()
    }
    vectors = normalize(pin_ref["pin_emb"])
    rng = np.random.default_rng(0)
    base = np.repeat(vectors, max(1, 20_000 // len(vectors)), axis=0)
    base = normalize(base + rng.normal(0, 0.02, base.shape).astype(np.float32))  # a 20k-pin catalog
    queries = base[rng.choice(len(base), 1000, replace=False)]
    index_results = {}
    for kind in ("hnsw", "ivfpq"):
        start = time.perf_counter()
        index = make_index(base, kind)
        build = time.perf_counter() - start
        recall, qps = recall_at_k(index, base, queries, 10)
        index_results[kind] = {"n": len(base), "recall@10": recall, "qps": qps, "build_s": build}
    result = {
        "model": args.model,
        "pins": args.pins,
        "parity_pins": args.parity_pins,
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "pins_per_s": rates,
        "ratios": ratios,
        "onnx_int8_graphs": report.graphs,
        "int8_choice": report.quantization,
        "export_parity": {"fp32": fp32_report.parity, "int8": report.parity},
        "int8_measurements": report.timings_ms,
        "bench_min_cosine_vs_eager": cosines,
        "index": index_results,
    }
    console.print_json(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(result))


def markdown(result: dict) -> str:
    """The headline table of a result, for bench/results/serving.md."""
    rows = [
        f"# Serving benchmark\n\n`{result['model']}`, {result['pins']} catalog pins per pass, "
        f"batch {result['batch']}, {result['threads']} threads, median of {result['repeats']} "
        "interleaved passes, all in one run.\n",
        "| task | eager pins/s | ONNX fp32 pins/s | ONNX int8 pins/s | fp32 / eager | int8 / eager |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task, r in result["pins_per_s"].items():
        ratio = result["ratios"][task]
        rows.append(
            f"| {task} | {r['eager']:.1f} | {r['onnx_fp32']:.1f} | {r['onnx_int8']:.1f} | "
            f"{ratio['onnx_fp32_over_eager']:.2f}x | {ratio['onnx_int8_over_eager']:.2f}x |"
        )
    rows += ["", f"int8 choice per part: `{result['int8_choice']}`", ""]
    rows += [f"int8 export parity (min cosine vs PyTorch): `{result['export_parity']['int8']}`"]
    rows += ["", "| index | n | recall@10 | QPS |", "| --- | ---: | ---: | ---: |"]
    for kind, r in result["index"].items():
        rows.append(f"| {kind} | {r['n']} | {r['recall@10']:.3f} | {r['qps']:.0f} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
