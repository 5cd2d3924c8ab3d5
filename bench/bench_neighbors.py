"""Benchmark: graph build, split, co-board sampling and random-walk neighbors at 10^4..10^6 pins.

    python bench/bench_neighbors.py                       # 10^4, 10^5, 10^6 pins
    python bench/bench_neighbors.py --sizes 1000 10000    # any sizes
    python bench/bench_neighbors.py --catalog data/synth  # a real catalog instead (one run)
    python bench/bench_neighbors.py --n-jobs 2            # random walks in 2 worker processes

By default the graph comes from `pinclip.graph.synthetic_edges` (3-5 boards per pin, Zipf
board popularity, ~20 pins per board on average) so that 10^6 pins need no images. Each size
runs in a fresh subprocess: `peak_rss_mb` is that process's peak resident set, and per stage
`peak_alloc_mb` is the tracemalloc peak of the stage alone (numpy arrays included). At the
end the slope of log(time) and log(memory) against log(edges) is fitted per stage (1 = linear).
Results go to bench/results/neighbors.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
STAGES = ("build", "split", "co_board_sample_all", "random_walk_top_k", "save_and_mmap_load")


@contextmanager
def measure(stages: dict, name: str):
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    stages[name] = {
        "seconds": round(time.perf_counter() - wall, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "peak_alloc_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1),
        "rss_so_far_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    tracemalloc.stop()


def child(pins: int, seed: int, catalog: str | None, rw: dict) -> dict:
    """Run every stage once in this process and return the measurements."""
    from pinclip.graph import (
        CoBoardSampler,
        NeighborLists,
        PinBoardGraph,
        RandomWalkConfig,
        compute_random_walk_neighbors,
        split_pins,
        synthetic_edges,
    )

    stages: dict = {}
    if catalog:
        from pinclip.data.catalog import read_catalog

        cat, _ = read_catalog(catalog, check_images=False)
        with measure(stages, "build"):
            graph = PinBoardGraph.from_catalog(cat)
    else:
        arrays = synthetic_edges(pins, seed=seed)
        with measure(stages, "build"):
            graph = PinBoardGraph.from_indices(*arrays)
        del arrays
    with measure(stages, "split"):
        split = split_pins(graph, cold_frac=0.1, val_frac=0.05, seed=seed)
    train = split.train_graph
    with measure(stages, "co_board_sample_all"):
        nbrs = CoBoardSampler(train, seed=seed).sample(
            np.arange(train.n_pins), np.random.default_rng(seed)
        )
    with measure(stages, "random_walk_top_k"):
        walk = RandomWalkConfig(**{k: v for k, v in rw.items() if k != "n_jobs"})
        lists = compute_random_walk_neighbors(train, walk, seed=seed, n_jobs=rw["n_jobs"])
    with tempfile.TemporaryDirectory() as tmp, measure(stages, "save_and_mmap_load"):
        lists.save(Path(tmp) / "nl")
        loaded = NeighborLists.load(Path(tmp) / "nl")
        assert int(loaded.indptr[-1]) == len(lists.indices)
    return {
        "pins": graph.n_pins,
        "boards": graph.n_boards,
        "edges": graph.n_edges,
        "train_edges": train.n_edges,
        "max_board_size": int(graph.board_size.max()),
        "pins_with_sampled_neighbor": int((nbrs >= 0).sum()),
        "mean_list_length": round(float(lists.lengths.mean()), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_workers_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "stages": stages,
    }


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    return round(float(np.polyfit(np.log(x), np.log(np.maximum(y, 1e-3)), 1)[0]), 2)


def to_markdown(results: list[dict], rw: dict) -> str:
    lines = [
        "# Neighbor computation benchmark",
        "",
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}; "
        f"random walks: {rw}.",
        "",
        "| pins | edges | stage | wall s | cpu s | stage peak alloc MB | process peak RSS MB |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for name, s in r["stages"].items():
            lines.append(
                f"| {r['pins']:,} | {r['edges']:,} | {name} | {s['seconds']} | {s['cpu_seconds']} | "
                f"{s['peak_alloc_mb']} | {r['peak_rss_mb']} |"
            )
    if len(results) > 1:
        edges = [r["edges"] for r in results]
        lines += ["", "Fitted slope of log(cost) on log(edges) (1.0 = linear):", ""]
        lines += ["| stage | cpu time slope | peak alloc slope |", "|---|---:|---:|"]
        for name in results[0]["stages"]:
            cpu = [r["stages"][name]["cpu_seconds"] for r in results]
            mem = [r["stages"][name]["peak_alloc_mb"] for r in results]
            lines.append(f"| {name} | {slope(edges, cpu)} | {slope(edges, mem)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--catalog", help="benchmark this catalog's graph instead of synthetic edges")
    from pinclip.graph import RandomWalkConfig

    walk = RandomWalkConfig()  # the one set of defaults (training's data.random_walk)
    ap.add_argument("--top-k", type=int, default=walk.top_k)
    ap.add_argument("--n-walks", type=int, default=walk.n_walks)
    ap.add_argument("--walk-length", type=int, default=walk.walk_length)
    ap.add_argument("--restart-prob", type=float, default=walk.restart_prob)
    ap.add_argument("--n-jobs", type=int, default=1, help="worker processes for the random walks")
    ap.add_argument("--out", type=Path, default=RESULTS / "neighbors", help="results path stem")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    rw = dict(
        top_k=args.top_k,
        n_walks=args.n_walks,
        walk_length=args.walk_length,
        restart_prob=args.restart_prob,
        n_jobs=args.n_jobs,
    )
    if args.child is not None:
        print(json.dumps(child(args.child, args.seed, args.catalog, rw)))
        return

    results = []
    for pins in [0] if args.catalog else args.sizes:
        cmd = [sys.executable, __file__, "--child", str(pins), "--seed", str(args.seed)]
        cmd += ["--top-k", str(args.top_k), "--n-walks", str(args.n_walks)]
        cmd += ["--walk-length", str(args.walk_length), "--restart-prob", str(args.restart_prob)]
        cmd += ["--n-jobs", str(args.n_jobs)]
        cmd += ["--catalog", args.catalog] if args.catalog else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark at {pins} pins failed:\n{proc.stderr}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        total = sum(s["seconds"] for s in r["stages"].values())
        print(
            f"{r['pins']:>9,} pins {r['edges']:>10,} edges: {total:7.1f} s, peak RSS {r['peak_rss_mb']} MB",
            flush=True,
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"random_walk": rw, "results": results}, indent=2)
    )
    report = to_markdown(results, rw)
    args.out.with_suffix(".md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
