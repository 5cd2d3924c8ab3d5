"""Serving at scale: embed pins/s per backend, streamed index build at 10^6, service with and
without micro-batching. Writes bench/results/scale_serve.{json,md}.

    python bench/bench_scale_serve.py --pins 256 --index-n 1000000

- embed: `embed_catalog` of one synthetic catalog (`--pins`) with the `small` preset
  (pretrained EfficientNet-Lite0 + MiniLM-L6 from their pip packages), backends eager torch,
  ONNX fp32 and ONNX int8 (exported here, parity-checked); backends interleaved per repeat,
  median pins/s.
- index: `--index-n` clustered 256-d vectors (bench_ann's generator) written as embedding
  parts (all three embedding columns, 512 pins a part, like `pinclip embed`); then, each in
  a fresh subprocess, (a) the streamed `build_index` (reads pin_id + pin_emb a batch at a
  time) and (b) what the build did before: `read_embeddings` of every column into memory.
  Wall time and peak RSS of each.
- service: two `pinclip serve` processes over one index, micro-batching off
  (`--batch-wait-ms 0`, today's server) and on (2 ms; this one a `--read-only` replica, the
  pin store has one writer); bench_service's client at
  concurrency 1/8/32, windows interleaved between the servers and levels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console

from _common import REPEATS, interleaved, markdown_table, write_result

console = Console()
SCRATCH = Path(tempfile.gettempdir()) / "pinclip-bench-scale-serve"


def _model_and_catalog(pins: int) -> tuple[Path, Path]:
    from pinclip.data.builders.synthetic import build_synthetic_catalog
    from pinclip.model import PinCLIP

    model, catalog = SCRATCH / "model", SCRATCH / f"catalog-{pins}"
    if not (model / "model.safetensors").is_file():
        PinCLIP.from_preset("small", pretrained=True, seed=0).save_pretrained(model)
    if not (catalog / "catalog.json").is_file():
        build_synthetic_catalog(catalog, pins=pins, seed=0, size=128, progress=False)
    return model, catalog


def bench_embed(pins: int, repeats: int) -> dict:
    from pinclip.serve import catalog_samples, embed_catalog, export_onnx

    model, catalog = _model_and_catalog(pins)
    exports = {}
    for name, int8 in (("onnx_fp32", False), ("onnx_int8", True)):
        out = SCRATCH / name
        if not (out / "export.json").is_file():
            console.print(f"exporting {name}")
            export_onnx(model, out, catalog_samples(catalog, 64), int8=int8)
        exports[name] = out
    runs = {"torch_eager": (model, "torch")} | {k: (v, "onnx") for k, v in exports.items()}
    counter = iter(range(10**6))

    def job(src: Path, backend: str):
        return lambda: embed_catalog(
            src, catalog, SCRATCH / f"emb-{next(counter)}", backend=backend, device="cpu",
            batch_size=32, part_size=128,
        )  # fmt: skip

    timed = interleaved({k: job(*v) for k, v in runs.items()}, repeats=repeats, warmup=0)
    out = {k: {"pins": pins, "pins_per_s": pins / v["median_s"], **v} for k, v in timed.items()}
    for name, path in exports.items():
        out[name]["export"] = json.loads((path / "export.json").read_text()).get("quantization")
    return out


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[4])
mode, parts, out = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
if mode == "streamed":
    from pinclip.serve.index import build_index
    _, info = build_index(parts, out, kind=sys.argv[5], recall_queries=1000)
else:
    from pinclip.serve.embed import read_embeddings
    ids, emb = read_embeddings(parts)
    info = {"rows": len(ids)}
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mib": rss, "info": info}, default=str))
"""


def _write_parts(n: int, out: Path) -> Path:
    """`n` clustered vectors as a finished `pinclip embed` output (three embedding columns)."""
    import pyarrow.parquet as pq

    from bench_ann import clustered_vectors
    from pinclip.serve.embed import MANIFEST_FILE, embeddings_table, part_name

    if (out / MANIFEST_FILE).is_file():
        return out
    (out / "parts").mkdir(parents=True, exist_ok=True)
    part_size, done, chunk = 512, [], 200 * 512  # chunks of whole parts
    for start in range(0, n, chunk):
        x = clustered_vectors(min(chunk, n - start), seed=1 + start)
        for i in range(0, len(x), part_size):
            rows = x[i : i + part_size]
            first = start + i
            ids = [f"p{first + j}" for j in range(len(rows))]
            table = embeddings_table(ids, {"image_emb": rows, "text_emb": rows, "pin_emb": rows})
            pq.write_table(table, out / part_name(first // part_size))
            done.append(first // part_size)
    manifest = {"fingerprint": "bench", "n_parts": len(done), "done": done, "rows": n}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    return out


def bench_index(n: int, kind: str) -> dict:
    parts = _write_parts(n, SCRATCH / f"parts-{n}")
    src = str(Path(__file__).resolve().parent)
    out = {}
    for mode in ("all_columns_in_memory", "streamed"):
        console.print(f"index {mode} at N = {n:,}")
        run = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(parts), str(SCRATCH / f"index-{n}"), src, kind],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if run.returncode:
            raise RuntimeError(run.stderr[-3000:])
        out[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    out["raw_vectors_mib"] = n * 256 * 4 / 2**20
    return out


def bench_service(repeats: int, seconds: float) -> dict:
    from bench_service import WORDS, free_port, start_server, window
    from pinclip.serve import prepare_serving

    model, catalog = _model_and_catalog(300)
    index = SCRATCH / "serving" / "index"
    if not (index / "index.faiss").is_file():
        prepare_serving(model, catalog, SCRATCH / "serving")
    rng = np.random.default_rng(0)
    queries = [f"{WORDS[a]} {WORDS[b]}" for a, b in rng.integers(0, len(WORDS), (5000, 2))]
    # Both over one index: the second is a read-only replica (one writer per pin store).
    servers, procs = {"batching_off": ["0"], "batching_2ms": ["2", "--read-only"]}, {}
    levels = (1, 8, 32)
    rates = {s: {c: [] for c in levels} for s in servers}
    lat = {s: {c: [] for c in levels} for s in servers}
    try:
        for name, wait in servers.items():
            port = free_port()
            log = SCRATCH / f"{name}.log"
            procs[name] = (
                start_server(index, model, "torch", port, log, ["--batch-wait-ms", *wait]),
                f"http://127.0.0.1:{port}/v1/search",
            )
        for url in (u for _, u in procs.values()):
            asyncio.run(window(url, 2, 2.0, queries))  # warm-up
        for r in range(repeats):
            for c in levels:
                for name, (_, url) in procs.items():
                    done, ls = asyncio.run(window(url, c, seconds, queries[r * 997 :]))
                    rates[name][c].append(done / seconds)
                    lat[name][c] += ls
            console.print(f"window {r + 1}/{repeats}")
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    return {
        name: {
            c: {
                "requests_per_s": float(np.median(rates[name][c])),
                "windows": rates[name][c],
                "p50_ms": float(np.percentile(lat[name][c], 50) * 1000),
                "p99_ms": float(np.percentile(lat[name][c], 99) * 1000),
                "requests": len(lat[name][c]),
            }
            for c in levels
        }
        for name in servers
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="embed,index,service")
    ap.add_argument("--pins", type=int, default=256, help="synthetic pins embedded per backend")
    ap.add_argument("--index-n", type=int, default=1_000_000)
    ap.add_argument("--kind", default="ivfsq8")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--merge", type=Path, help="an earlier scale_serve.json to keep sections of")
    args = ap.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    result = json.loads(args.merge.read_text()) if args.merge else {}
    result.pop("machine", None), result.pop("command", None)
    only = args.only.split(",")
    if "embed" in only:
        result["embed"] = bench_embed(args.pins, args.repeats)
    if "index" in only:
        result["index"] = bench_index(args.index_n, args.kind)
    if "service" in only:
        result["service"] = bench_service(args.repeats, args.seconds)
    rows = []
    for name, r in result.get("embed", {}).items():
        rows.append(["embed", name, f"{r['pins']} pins", f"{r['pins_per_s']:.3g} pins/s"])
    for mode, r in result.get("index", {}).items():
        if isinstance(r, dict):
            rows.append(["index", mode, f"{r['seconds']:.0f} s", f"{r['peak_rss_mib']:,.0f} MiB"])
    for name, levels in result.get("service", {}).items():
        for c, r in levels.items():
            rows.append(["service", f"{name} c={c}", f"{r['requests_per_s']:.3g} req/s",
                         f"p99 {r['p99_ms']:.0f} ms"])  # fmt: skip
    table = markdown_table(["section", "what", "value", "value"], rows)
    console.print(table)
    write_result("scale_serve", result, table)


if __name__ == "__main__":
    main()
