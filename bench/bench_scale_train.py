"""Training at catalog scale: wall time, samples/s and peak anonymous memory per stage.

    nice -n 5 python bench/bench_scale_train.py --pins 2000 100000 --steps 20 --workers 2

For each catalog size N (a synthetic catalog, built with `pinclip catalog build synthetic`
unless `--catalog-root` already holds `syn-<N>`), three stages run as separate processes,
each exactly what a user runs:
- `catalog`: `pinclip catalog build synthetic DIR --pins N --seed 0`;
- `features`: the frozen-feature store build (`PinInputs.prepare`, `--workers` processes);
- `train`: `pinclip train` of the `small` preset for `--steps` optimizer steps on the built
  store (its set-up, the steps, the final validation over all N pins and the checkpoint).
Peak RSS is anonymous memory (`RssAnon` of /proc/PID/status), sampled every 0.2 s and
summed over the stage's process and all its descendants (worker processes): the mapped
store's pages are page cache the kernel may evict, not the process's own memory.
Writes bench/results/scale_train.json as {"N": {"stage": {"seconds": s, "peak_rss_mib": m, ...}}}.
A features build killed midway resumes (the store is content-keyed): the figure then
records the rows this attempt computed and its rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import RESULTS, markdown_table, write_result

HERE = Path(__file__).resolve().parent
SMALL = [  # the small preset with the store settings docs/training.md chose
    "model.preset=small",
    "data.feature_dtype=int8",
    "model.overrides.text.keep_tokens=4",
    "model.overrides.image.fine_grid=4",
]
# The same pipeline with the tiny preset's frozen parts (a random-init test stem and a
# byte-level encoder: cheap to compute, so a 10^5 store builds in minutes on 2 shared cores).
TINY = [
    "model.preset=tiny",
    "model.overrides.freeze_stem=true",
    "model.overrides.freeze_text_encoder=true",
]


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _rss_anon_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_anon_mib(pid: int) -> tuple[float, float, dict[int, float]]:
    """RssAnon (MiB) of `pid` and all its descendants: (sum, `pid` alone, per descendant)."""
    own, kids, todo = _rss_anon_kib(pid) / 1024, {}, _children(pid)
    while todo:
        p = todo.pop()
        kids[p] = _rss_anon_kib(p) / 1024
        todo += _children(p)
    return own + sum(kids.values()), own, kids


def run_stage(
    cmd: list[str], log: Path, env: dict | None = None, timeout: float | None = None
) -> dict:
    """Run `cmd`, sampling its process tree's RssAnon: seconds, the peak of the sum over the
    tree, and apart the main process's peak and the largest worker's (a worker's memory is
    the model and one chunk, so the sum moves with the worker count, not with N).
    With `timeout`, the process group is ended after that many seconds (a probe of a stage
    too long to finish: its figures then say `killed_after_s`)."""
    started = time.perf_counter()
    killed = False
    peak = main_peak = 0.0
    workers: dict[int, float] = {}
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        while proc.poll() is None:
            if timeout is not None and time.perf_counter() - started > timeout and not killed:
                os.killpg(proc.pid, signal.SIGTERM)
                killed = True
            total, own, kids = tree_rss_anon_mib(proc.pid)
            peak, main_peak = max(peak, total), max(main_peak, own)
            for pid, mib in kids.items():
                workers[pid] = max(workers.get(pid, 0.0), mib)
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    if killed:
        return {
            "killed_after_s": round(seconds, 2),
            "peak_rss_mib": round(peak, 1),
            "main_peak_rss_mib": round(main_peak, 1),
            "worker_processes": len(workers),
        }
    if proc.returncode:
        raise SystemExit(f"stage failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak, 1),
        "main_peak_rss_mib": round(main_peak, 1),
        "worker_processes": len(workers),
        "worker_peak_rss_mib": round(max(workers.values(), default=0.0), 1),
    }


class _MetricsWatch(threading.Thread):
    """Times when each metrics.jsonl line appears (steps vs the final validation)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self.stop = path, [], threading.Event()

    def run(self) -> None:
        seen = 0
        while not self.stop.is_set():
            if self.path.is_file():
                rows = self.path.read_text().splitlines()
                for row in rows[seen:]:
                    if row.endswith("}"):
                        self.lines.append((time.perf_counter(), json.loads(row)))
                        seen += 1
            time.sleep(0.1)


def features_stage(args: argparse.Namespace) -> None:
    """(child) Build the store for a config: what `pinclip train` does before its first step."""
    import torch
    from rich.console import Console

    from pinclip.model.inputs import PinInputs
    from pinclip.train.config import load_config
    from pinclip.train.data import load_training_data
    from pinclip.train.recipe import build_model

    cfg = load_config(None, args.overrides)
    console = Console(stderr=True)
    data = load_training_data(cfg.data, console=console)
    model = build_model(cfg.model, seed=cfg.seed, loss_kind=cfg.loss.kind)
    PinInputs.prepare(
        model,
        data,
        cache_dir=Path(cfg.data.cache_dir),
        device=torch.device("cpu"),
        console=console,
        feature_dtype=cfg.data.feature_dtype,
        workers=cfg.data.feature_workers,
    )


def bench_size(n: int, args: argparse.Namespace) -> dict:
    root = Path(args.catalog_root)
    catalog, work = root / f"syn-{n}", Path(args.work) / f"{args.preset}-n{n}"
    work.mkdir(parents=True, exist_ok=True)
    stages: dict[str, dict] = {}
    pinclip = [sys.executable, "-m", "pinclip"]
    if not (catalog / "catalog.json").is_file():
        stages["catalog"] = run_stage(
            [
                *pinclip,
                "catalog",
                "build",
                "synthetic",
                str(catalog),
                "--pins",
                str(n),
                "--seed",
                "0",
            ],
            work / "catalog.log",
        )
    overrides = [
        *(SMALL if args.preset == "small" else TINY),
        *args.set,
        f"data.catalog={catalog}",
        "data.build_if_missing=null",
        "data.check_images=false",
        f"data.cache_dir={work / 'cache'}",
        f"data.feature_workers={args.workers}",
        f"run_dir={work / 'run'}",
        f"max_steps={args.steps}",
        f"batch_size={args.batch_size}",
        "tensorboard=false",
    ]
    stages["features"] = run_stage(
        [sys.executable, str(Path(__file__)), "--stage", "features", "--overrides", *overrides],
        work / "features.log",
    )
    store = work / "cache" / "features"
    stages["features"]["store_mib"] = round(
        sum(p.stat().st_size for p in store.rglob("*.npy")) / 2**20, 1
    )
    stages["features"]["store_kib_per_pin"] = round(stages["features"]["store_mib"] * 1024 / n, 2)
    metrics = work / "run" / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    watch = _MetricsWatch(metrics)
    watch.start()
    stages["train"] = run_stage([*pinclip, "train", *overrides], work / "train.log")
    watch.stop.set()
    watch.join()
    steps = [(t, r) for t, r in watch.lines if "loss" in r]
    val = [(t, r) for t, r in watch.lines if "val_recall@10" in r]
    rates = sorted(r["samples_per_s"] for _, r in steps)
    stages["train"]["samples_per_s_median"] = round(rates[len(rates) // 2], 2)
    if steps and val:
        stages["train"]["final_validation_seconds"] = round(val[-1][0] - steps[-1][0], 2)
    return stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pins", type=int, nargs="+", default=[2000, 100_000])
    p.add_argument("--preset", choices=["small", "tiny"], default="small")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value training overrides")
    p.add_argument("--name", default="scale_train", help="results file name")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--catalog-root", default="/tmp/pinclip-scale")
    p.add_argument("--work", default="/tmp/pinclip-scale/work")
    p.add_argument("--stage", choices=["features"], help=argparse.SUPPRESS)
    p.add_argument("--overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage == "features":
        return features_stage(args)
    result: dict = {}
    previous = RESULTS / f"{args.name}.json"
    if previous.is_file():  # keep sizes measured by an earlier invocation
        result = {k: v for k, v in json.loads(previous.read_text()).items() if k.isdigit()}
    for n in args.pins:
        result[str(n)] = bench_size(n, args)
        print(json.dumps({n: result[str(n)]}), flush=True)
    sizes = sorted(int(k) for k in result)
    rows = []
    for n in sizes:
        for stage, r in result[str(n)].items():
            extra = {k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mib")}
            rows.append([f"{n:,}", stage, r["seconds"], r["peak_rss_mib"], json.dumps(extra)[1:-1]])
    if len(sizes) > 1:
        lo, hi = result[str(sizes[0])], result[str(sizes[-1])]
        result["rss_ratio_train"] = round(
            hi["train"]["peak_rss_mib"] / lo["train"]["peak_rss_mib"], 3
        )
        result["rss_ratio_features"] = round(
            hi["features"]["peak_rss_mib"] / lo["features"]["peak_rss_mib"], 3
        )
    table = markdown_table(["pins", "stage", "seconds", "peak RssAnon (MiB)", "other"], rows)
    env = {
        "overrides": [*(SMALL if args.preset == "small" else TINY), *args.set],
        "steps": args.steps,
        "batch_size": args.batch_size,
        "workers": args.workers,
    }
    write_result(args.name, {**result, "settings": env}, table)
    print(table)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
