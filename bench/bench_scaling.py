"""Scaling: catalog build, neighbor computation, embedding and index build against N pins.

    python bench/bench_scaling.py            # the default sizes below (about 6 min on 2 busy cores)
    python bench/bench_scaling.py --large    # adds catalog 10^5, embed 3,000, graph/index 10^6

Every (stage, N) runs in a fresh subprocess so its peak RSS is its own (process + workers):
- catalog: `build_synthetic_catalog` (bench_catalog's child script), 64 px images, 2 workers.
- neighbors: bench_neighbors' child (graph build, split, co-board sampling, random-walk top-k,
  save + mmap load on `synthetic_edges`); time is the sum of its stages.
- embed: `pinclip.serve.embed_catalog` (streaming parquet parts) of the catalogs built above.
- index: the serving index, `pinclip.serve.index.make_index(kind="hnsw")` (faiss HNSW M=32,
  efConstruction 80) over clustered 256-d vectors (bench_ann's generator).
Memory is the peak RSS (process + workers); for embed and index, minus the RSS right after
imports (torch and friends are ~1 GiB, the same at every N). The slope of log(time) and log(memory) on log(N) is fitted per stage: 1 is linear time; a
memory slope near 0 means memory stays bounded as N grows (the streaming steps).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.console import Console

from _common import RESULTS, loglog_slope, markdown_table, write_result
from bench_catalog import CHILD as CATALOG_CHILD

HERE = Path(__file__).resolve().parent
DEFAULT = {
    "catalog": [1_000, 3_000, 10_000],
    "neighbors": [1_000, 10_000, 100_000],
    "embed": [250, 500, 1_000],
    "index": [1_000, 10_000, 100_000],
}
LARGE = {"catalog": [100_000], "neighbors": [1_000_000], "embed": [3_000], "index": [1_000_000]}
console = Console()

EMBED_CHILD = """
import json, resource, sys, time
from pinclip.serve import embed_catalog
model, catalog, out = sys.argv[1:4]
base = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20  # after imports
t = time.perf_counter()
embed_catalog(model, catalog, out, backend=sys.argv[4])
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": peak, "mem_mb": peak - base}))
"""

INDEX_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import faiss
from bench_ann import clustered_vectors
from pinclip.serve.index import make_index
faiss.omp_set_num_threads(2)
base = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20  # after imports
x = clustered_vectors(int(sys.argv[1]), seed=1)
t = time.perf_counter()
make_index(x, "hnsw")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": peak, "mem_mb": peak - base,
  "vectors_mb": x.nbytes / 2**20}))
"""


def child(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, cwd=HERE.parent
    )
    if proc.returncode:
        raise SystemExit(f"{args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_catalog(n: int, scratch: Path) -> dict:
    t = time.perf_counter()
    r = child(["-c", CATALOG_CHILD, str(n), "0", "64", "2", str(scratch / f"catalog-{n}")])
    return {
        "seconds": r["seconds"],
        "wall_s": time.perf_counter() - t,
        "peak_rss_mb": max(r["peak_rss_main_mb"], r["peak_rss_worker_mb"]),
    }


def run_neighbors(n: int) -> dict:
    r = child([str(HERE / "bench_neighbors.py"), "--child", str(n)])
    return {
        "seconds": sum(s["seconds"] for s in r["stages"].values()),
        "peak_rss_mb": r["peak_rss_mb"],
        "stages": r["stages"],
    }


def run_embed(n: int, scratch: Path, model: str, backend: str) -> dict:
    catalog = scratch / f"catalog-{n}"
    if not catalog.is_dir():
        child(["-c", CATALOG_CHILD, str(n), "0", "64", "2", str(catalog)])
    return child(["-c", EMBED_CHILD, model, str(catalog), str(scratch / f"embed-{n}"), backend])


def run_index(n: int) -> dict:
    return child(["-c", INDEX_CHILD, str(n), str(HERE)])


def plot(results: dict, path: Path) -> None:
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for stage, rows in results.items():
        n = [r["n"] for r in rows]
        t, m = [r["seconds"] for r in rows], [r["mem_mb"] for r in rows]
        if len(rows) >= 2:
            ax_t.plot(n, t, "o-", label=f"{stage} (slope {loglog_slope(n, t):.2f})")
            ax_m.plot(n, m, "o-", label=f"{stage} (slope {loglog_slope(n, m):.2f})")
    for ax, label in (
        (ax_t, "seconds"),
        (ax_m, "peak memory (MiB; above imports for embed/index)"),
    ):
        ax.set(xscale="log", yscale="log", xlabel="pins N", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_t.set_title("time vs N")
    ax_m.set_title("peak memory vs N")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--stages", default="catalog,neighbors,embed,index")
    ap.add_argument("--model", default="runs/emoji-small/best")
    ap.add_argument("--backend", default="torch")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="pinclip-scaling-"))
    results: dict[str, list[dict]] = {}
    try:
        for stage in args.stages.split(","):
            sizes = DEFAULT[stage] + (LARGE[stage] if args.large else [])
            results[stage] = []
            for n in sizes:
                console.print(f"{stage} N={n:,} ...")
                if stage == "catalog":
                    r = run_catalog(n, scratch)
                elif stage == "neighbors":
                    r = run_neighbors(n)
                elif stage == "embed":
                    r = run_embed(n, scratch, args.model, args.backend)
                else:
                    r = run_index(n)
                r.setdefault("mem_mb", r["peak_rss_mb"])
                results[stage].append({"n": n, **r})
                console.print(f"  {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MiB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows, slopes = [], {}
    for stage, rs in results.items():
        n = [r["n"] for r in rs]
        t, m = [r["seconds"] for r in rs], [r["mem_mb"] for r in rs]
        slopes[stage] = (
            {"time": loglog_slope(n, t), "memory": loglog_slope(n, m)} if len(rs) > 1 else {}
        )
        for r in rs:
            rows.append(
                [
                    stage,
                    f"{r['n']:,}",
                    r["seconds"],
                    r["n"] / r["seconds"],
                    r["peak_rss_mb"],
                    r["mem_mb"],
                ]
            )
    table = markdown_table(
        ["stage", "N", "seconds", "pins/s", "peak RSS MiB", "memory MiB (fitted)"], rows
    )
    table += "\n" + markdown_table(
        ["stage", "time slope", "memory slope"],
        [
            [s, v.get("time", float("nan")), v.get("memory", float("nan"))]
            for s, v in slopes.items()
        ],
    )
    console.print(table)
    plot(results, RESULTS / "scaling.png")
    write_result(
        "scaling",
        {
            "results": results,
            "slopes": slopes,
            "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        table,
    )


if __name__ == "__main__":
    main()
