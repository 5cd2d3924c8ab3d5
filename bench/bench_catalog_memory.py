"""Benchmark: host memory per pin of reading a catalog and of training's data set-up.

    python bench/bench_catalog_memory.py --before /path/to/checkout-of-old-code
    python bench/bench_catalog_memory.py --before ../wt-before --pins 10000 100000 --repeats 3

The catalog is `pinclip catalog build synthetic`'s tables, byte for byte, with the images
stubbed (`_render_shard` draws nothing): `read_catalog(check_images=False)` and the graph,
split and neighbor set-up never open an image, and drawing 10^5 of them takes ~6 minutes of
both cores. A warm-up catalog (2,000 pins) is read first in every child, so lazy imports and
allocator pools are not counted. Each measurement is a fresh process per code tree (before:
`--before`'s src; after: this checkout's src), the trees in turn (before, after, before, ...):
- `read`: `read_catalog(check_images=False)` and nothing else;
- `setup`: `load_training_data` (read, graph, split, held-out boards, co-board sampler,
  loss arrays: what `pinclip train` does before its first step).
`retained` is RssAnon (/proc/self/status) after the step (objects kept, `gc.collect()`)
minus before it; `peak` is the highest RssAnon sampled every 2 ms during the step minus
before it. Per pin: the median over repeats divided by N, and the slope between the two
largest N (fixed costs removed). Results: bench/results/catalog_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT = RESULTS / "catalog_memory.json"
WARMUP_PINS = 2_000

BUILD = """
import sys
from pinclip.data.builders import synthetic
synthetic._render_shard = lambda args: len(args[4])  # tables only: no image is drawn
synthetic.build_synthetic_catalog(sys.argv[1], pins=int(sys.argv[2]), seed=0, workers=1, progress=False)
"""

CHILD = r"""
import gc, io, json, sys, threading, time

def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")

from rich.console import Console
from pinclip.data.catalog import read_catalog
from pinclip.train.config import DataConfig
from pinclip.train.data import load_training_data

stage, catalog, warmup = sys.argv[1], sys.argv[2], sys.argv[3]
quiet = Console(file=io.StringIO())

def step(root):
    if stage == "read":
        return read_catalog(root, check_images=False)
    return load_training_data(DataConfig(catalog=root, check_images=False), console=quiet)

kept = step(warmup)  # lazy imports, Arrow/numpy pools: not the catalog's cost
del kept
gc.collect()
base = rss_anon()
peak = [base]
done = threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_anon())
        time.sleep(0.002)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.perf_counter()
kept = step(catalog)
seconds = time.perf_counter() - started
gc.collect()
after = rss_anon()
done.set()
sampler.join()
peak[0] = max(peak[0], after)
print(json.dumps({"retained": after - base, "peak": peak[0] - base, "seconds": seconds}))
"""


def build(out: Path, pins: int, src: Path) -> Path:
    """The synthetic tables of `pins` pins at `out` (reused when already there)."""
    if not (out / "catalog.json").is_file():
        env = os.environ | {"PYTHONPATH": str(src)}
        subprocess.run([sys.executable, "-c", BUILD, str(out), str(pins)], env=env, check=True)
    return out


def child(stage: str, catalog: Path, warmup: Path, src: Path) -> dict:
    env = os.environ | {"PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, stage, str(catalog), str(warmup)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{stage} on {catalog} with {src} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def git_head(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--before", type=Path, required=True, help="checkout of the code before")
    ap.add_argument("--pins", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/pinclip-catalog-memory"))
    args = ap.parse_args()
    trees = {"before": args.before.resolve() / "src", "after": ROOT / "src"}
    load = [os.getloadavg()]
    warmup = build(args.scratch / f"synthetic-{WARMUP_PINS}", WARMUP_PINS, trees["after"])
    results: dict = {}
    for n in sorted(args.pins):
        catalog = build(args.scratch / f"synthetic-{n}", n, trees["after"])
        runs: dict = {tree: {"read": [], "setup": []} for tree in trees}
        for _ in range(args.repeats):
            for stage in ("read", "setup"):
                for tree, src in trees.items():
                    runs[tree][stage].append(child(stage, catalog, warmup, src))
                    print(n, tree, stage, runs[tree][stage][-1], flush=True)
        results[str(n)] = {
            tree: {
                stage: {
                    "retained_bytes": int(statistics.median(r["retained"] for r in rs)),
                    "peak_bytes": int(statistics.median(r["peak"] for r in rs)),
                    "seconds": round(statistics.median(r["seconds"] for r in rs), 3),
                    "retained_bytes_per_pin": round(
                        statistics.median(r["retained"] for r in rs) / n, 1
                    ),
                    "peak_bytes_per_pin": round(statistics.median(r["peak"] for r in rs) / n, 1),
                    "runs": rs,
                }
                for stage, rs in stages.items()
            }
            for tree, stages in runs.items()
        }
    load.append(os.getloadavg())
    sizes = sorted(int(n) for n in results)
    slopes = {}
    if len(sizes) >= 2:
        lo, hi = sizes[-2], sizes[-1]
        for tree in trees:
            for stage in ("read", "setup"):
                for what in ("retained_bytes", "peak_bytes"):
                    d = results[str(hi)][tree][stage][what] - results[str(lo)][tree][stage][what]
                    slopes.setdefault(tree, {}).setdefault(stage, {})[f"{what}_per_pin"] = round(
                        d / (hi - lo), 1
                    )
    out = {
        "command": "python bench/bench_catalog_memory.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "code": {"before": git_head(args.before), "after": git_head(ROOT)},
        "load_avg_1_5_15": {
            "start": [round(x, 2) for x in load[0]],
            "end": [round(x, 2) for x in load[1]],
        },
        "catalog": "synthetic tables (seed 0), images stubbed; read with check_images=False",
        "results": results,
        "slope_bytes_per_pin": {"between": sizes[-2:], **slopes} if slopes else {},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=1) + "\n")
    print(
        json.dumps(
            {
                n: {
                    t: {
                        s: (v["retained_bytes_per_pin"], v["peak_bytes_per_pin"])
                        for s, v in st.items()
                    }
                    for t, st in r.items()
                }
                for n, r in results.items()
            },
            indent=1,
        )
    )
    print(json.dumps(out["slope_bytes_per_pin"], indent=1))


if __name__ == "__main__":
    main()
