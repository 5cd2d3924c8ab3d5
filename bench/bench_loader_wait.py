"""Loader wait with trainable towers: the share of a training step spent waiting for batches.

    nice -n 5 python bench/bench_loader_wait.py --catalog data/emoji --steps 6 --batch-size 16

Runs `pinclip train` with the `base` preset (stem and text encoder trainable, images
decoded and tokenized per batch) on the CPU, once with the decoding in the main process
(`data.loader_workers=0`) and once with worker processes (`--workers`), one after the other
in one invocation, and reports the median `loader_wait_share`, step seconds and samples/s
over the steps after the first (which includes the workers' start-up), with the peak
anonymous memory of the run's process tree (workers included) and the load average
before and after each run: on a shared machine the two runs' absolute speeds are only
comparable when the load stayed put, while the wait share is a ratio within each step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, write_result
from bench_scale_train import tree_rss_anon_mib


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
    load_before = os.getloadavg()[0]
    log = (work / f"w{workers}.log").open("w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    metrics = run_dir / "metrics.jsonl"
    steps: list[dict] = []
    peak = 0.0
    try:
        while len(steps) < args.steps:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"train failed ({proc.returncode}): {log.read()[-2000:]}")
            peak = max(peak, tree_rss_anon_mib(proc.pid)[0])
            time.sleep(0.5)
            if metrics.is_file():
                lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.endswith("}")]
                if len([x for x in lines if "loss" in x]) > len(steps):
                    steps = [x for x in lines if "loss" in x]
                    print(f"workers={workers}: step {len(steps)}/{args.steps}", file=sys.stderr)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the trainer and its loader workers
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        log.close()
    timed = steps[1:]
    return {
        "loader_wait_share": statistics.median(x["loader_wait_share"] for x in timed),
        "step_seconds": statistics.median(args.batch_size / x["samples_per_s"] for x in timed),
        "samples_per_s": statistics.median(x["samples_per_s"] for x in timed),
        "peak_rss_anon_mib": round(peak, 1),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "steps": [
            {"loader_wait_share": x["loader_wait_share"], "samples_per_s": x["samples_per_s"]}
            for x in steps
        ],
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
    rows = [
        [k, v["loader_wait_share"], v["step_seconds"], v["samples_per_s"], v["peak_rss_anon_mib"]]
        for k, v in result.items()
    ]
    table = markdown_table(
        ["loader", "loader wait share of a step", "s/step", "samples/s", "peak RssAnon (MiB)"],
        rows,
    )
    write_result(f"loader_wait_{args.preset}", result, table)
    print(table)


if __name__ == "__main__":
    main()
