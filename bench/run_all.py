"""`make bench`: every BENCHMARKS.md section, one script after another, results in bench/results/.

    python bench/run_all.py              # the default sizes (under 30 min on 2 cores)
    python bench/run_all.py --large      # adds the 10^6 runs (ANN for every library, scaling)
    python bench/run_all.py --only ann,service

Scripts run one at a time (each benchmark needs the whole machine) in subprocesses; a failing
section is reported and the others still run. Durations go to bench/results/run_all.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS  # noqa: E402


def sections(large: bool) -> dict[str, list[str]]:
    """Section name -> the command line behind its BENCHMARKS.md table."""
    # 10^6 HNSW builds take 5-20 min each on 2 shared cores: only with --large
    ann_1e6 = ["bench_ann.py", "--sizes", "1000000", "--libs", "faiss_hnsw,faiss_ivfpq,hnswlib"]
    return {
        "train_step": ["bench_train_step.py", "--config", "configs/emoji-small.yaml"],
        "inference": ["bench_inference.py", "--model", "runs/emoji-small/best"],
        "ann": ["bench_ann.py", "--sizes", "100000"],
        "ann_1e6": [*ann_1e6, "--name", "ann_1e6"] if large else [],
        "scaling": ["bench_scaling.py", *(["--large"] if large else [])],
        "service": ["bench_service.py"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated section names")
    args = ap.parse_args()
    todo = {k: v for k, v in sections(args.large).items() if v}
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(",")}
    root = HERE.parent
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    report, started = {}, time.perf_counter()
    for name, cmd in todo.items():
        print(f"\n=== {name}: python bench/{' '.join(cmd)}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=root, env=env, check=False
        )
        report[name] = {
            "command": "python bench/" + " ".join(cmd),
            "seconds": round(time.perf_counter() - t, 1),
            "ok": proc.returncode == 0,
            "load_avg": os.getloadavg(),
        }
        print(
            f"=== {name}: {'ok' if proc.returncode == 0 else 'FAILED'} in {report[name]['seconds']:.0f} s",
            flush=True,
        )
    total = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run_all.json").write_text(
        json.dumps({"total_s": round(total, 1), "sections": report}, indent=2) + "\n"
    )
    print(
        f"\nall sections in {total / 60:.1f} min: "
        + ", ".join(
            f"{k} {v['seconds']:.0f}s{'' if v['ok'] else ' FAILED'}" for k, v in report.items()
        )
    )
    if not all(v["ok"] for v in report.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
