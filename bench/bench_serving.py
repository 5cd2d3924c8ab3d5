"""Serving throughput: ONNX (int8 where export kept it) vs PyTorch eager, and index quality/speed.

    python bench/bench_serving.py --model runs/emoji-small/best --catalog data/emoji \
        --out bench/results/serving.json

Both backends embed the same catalog pins (image + text -> all three embeddings) in the
same run, after a warm-up batch, with the same thread count; the ratio is pins/s of ONNX
over pins/s of eager. The index part builds HNSW (and IVF-PQ) over the eager pin
embeddings and reports recall@10 against exact search and queries per second.
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


def throughput(
    embedder, pixels: np.ndarray, texts: list[str], batch: int, repeats: int
) -> tuple[float, dict]:
    """Median pins/s over `repeats` passes over the samples; also returns the embeddings."""
    embedder.embed_pins(pixels[:batch], texts[:batch])  # warm-up
    rates, out = [], None
    for _ in range(repeats):
        start, parts = time.perf_counter(), []
        for i in range(0, len(pixels), batch):
            parts.append(embedder.embed_pins(pixels[i : i + batch], texts[i : i + batch]))
        rates.append(len(pixels) / (time.perf_counter() - start))
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return float(np.median(rates)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/emoji-small/best")
    ap.add_argument("--catalog", default="data/emoji")
    ap.add_argument("--pins", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    console = Console()
    torch.set_num_threads(args.threads)
    samples = catalog_samples(args.catalog, args.pins, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        report = export_onnx(args.model, Path(tmp) / "onnx", samples[:64], int8=True)
        eager = TorchEmbedder.load(args.model)
        onnx = OnnxEmbedder(Path(tmp) / "onnx", threads=args.threads)
        pixels = np.stack([eager.preprocess(img) for img, _ in samples]).astype(np.float32)
        texts = [t for _, t in samples]
        eager_rate, ref = throughput(eager, pixels, texts, args.batch, args.repeats)
        onnx_rate, got = throughput(onnx, pixels, texts, args.batch, args.repeats)
    cosines = {k: float((normalize(ref[k]) * normalize(got[k])).sum(1).min()) for k in ref}
    vectors = normalize(ref["pin_emb"])
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
        "pins": len(samples),
        "batch": args.batch,
        "threads": args.threads,
        "eager_pins_per_s": eager_rate,
        "onnx_pins_per_s": onnx_rate,
        "onnx_over_eager": onnx_rate / eager_rate,
        "onnx_graphs": report.graphs,
        "export_parity": report.parity,
        "int8_measurements": report.timings_ms,
        "bench_min_cosine": cosines,
        "index": index_results,
    }
    console.print_json(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
