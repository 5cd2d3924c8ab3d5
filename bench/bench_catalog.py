"""Benchmark: synthetic catalog build time and peak memory at 10^4, 10^5 (and 10^6) pins.

    python bench/bench_catalog.py                  # 10^4 and 10^5
    python bench/bench_catalog.py --large          # also 10^6 (about 10-20 min on 2 cores)
    python bench/bench_catalog.py --sizes 1000     # any sizes

Each size is built in a fresh subprocess so peak RSS is per build: `main` is the builder process,
`worker` the largest drawing process. Results go to bench/results/catalog_build.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pinclip.data.builders.synthetic import build_synthetic_catalog
pins, seed, size, workers, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t = time.perf_counter()
build_synthetic_catalog(out, pins=pins, seed=seed, size=size, workers=workers, progress=False)
seconds = time.perf_counter() - t
meta = json.load(open(out + "/catalog.json"))
print(json.dumps({
    "pins": pins, "boards": meta["counts"]["boards"], "edges": meta["counts"]["edges"],
    "seconds": round(seconds, 2), "pins_per_second": round(pins / seconds, 1),
    "peak_rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
}))
"""


def run(pins: int, *, seed: int, size: int, workers: int, scratch: Path) -> dict:
    out = scratch / f"synthetic-{pins}"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(pins), str(seed), str(size), str(workers), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"build of {pins} pins failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["disk_mb"] = round(
        sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1
    )
    shutil.rmtree(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--large", action="store_true", help="also build 10^6 pins")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--scratch", type=Path, default=None, help="where to build (default: a temp dir)"
    )
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    sizes = sorted(set(args.sizes + ([1_000_000] if args.large else [])))

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="pinclip-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        rows.append(run(n, seed=args.seed, size=args.size, workers=args.workers, scratch=scratch))
        print(json.dumps(rows[-1]), flush=True)
        write_results(rows, args)  # after every size, so a long --large run keeps what it has


def write_results(rows: list[dict], args: argparse.Namespace) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "workers": args.workers,
        "image_size": args.size,
        "seed": args.seed,
        "load_average_at_end": os.getloadavg()[0],
    }
    (args.results / "catalog_build.json").write_text(
        json.dumps({"env": env, "runs": rows}, indent=2) + "\n"
    )
    lines = [
        "# Synthetic catalog build",
        "",
        f"{env['workers']} drawing processes, {args.size}px PNG images, seed {args.seed}, Python {env['python']}.",
        "",
        "| pins | boards | edges | seconds | pins/s | peak RSS main (MB) | peak RSS worker (MB) | disk (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['pins']:,} | {r['boards']:,} | {r['edges']:,} | {r['seconds']} | {r['pins_per_second']:,} "
        f"| {r['peak_rss_main_mb']} | {r['peak_rss_worker_mb']} | {r['disk_mb']} |"
        for r in rows
    ]
    (args.results / "catalog_build.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
