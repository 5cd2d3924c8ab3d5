"""Loader wait with trainable towers: the share of a training step spent waiting for batches.

    nice -n 5 python bench/bench_loader_wait.py --catalog data/emoji --steps 6 --batch-size 16

Runs `pinclip train` with the `base` preset (stem and text encoder trainable, images
decoded and tokenized per batch) on the CPU, once with the decoding in the main process
(`data.loader_workers=0`) and once with worker processes (`--workers`), side by side, and
reports the median `loader_wait_share` and samples/s over the steps after the first (which
includes the workers' start-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, write_result


def run(catalog: str, workers: int, args: argparse.Namespace, work: Path) -> dict:
    run_dir = work / f"w{workers}"
    cmd = [
        sys.executable,
        "-m",
        "pinclip",
        "train",
        f"model.preset={args.preset}",
        f"data.catalog={catalog}",
        "data.build_if_missing=null",
        f"data.cache_dir={work / 'cache'}",
        f"data.loader_workers={workers}",
        f"run_dir={run_dir}",
        f"max_steps={args.steps}",
        f"batch_size={args.batch_size}",
        f"ckpt_every={10**9}",
        "tensorboard=false",
        "device=cpu",
    ]
    # stop the run after its steps: the final validation would embed every pin (not timed)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = run_dir / "metrics.jsonl"
    steps: list[dict] = []
    while len(steps) < args.steps:
        if proc.poll() is not None:
            raise SystemExit(f"train failed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
        if metrics.is_file():
            lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.endswith("}")]
            steps = [x for x in lines if "loss" in x]
    proc.terminate()
    proc.wait()
    steps = steps[1:]
    return {
        "loader_wait_share": statistics.median(x["loader_wait_share"] for x in steps),
        "samples_per_s": statistics.median(x["samples_per_s"] for x in steps),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--catalog", default="data/emoji")
    p.add_argument("--preset", default="base", help="a preset with trainable towers")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {f"workers_{w}": run(args.catalog, w, args, Path(tmp)) for w in (0, args.workers)}
    rows = [[k, v["loader_wait_share"], v["samples_per_s"]] for k, v in result.items()]
    table = markdown_table(["loader", "loader wait share of a step", "samples/s"], rows)
    write_result(f"loader_wait_{args.preset}", result, table)
    print(table)


if __name__ == "__main__":
    main()
