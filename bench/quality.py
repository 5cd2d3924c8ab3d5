"""Quality on every development catalog with ONE config: PinCLIP, λ = 0, open_clip, baselines.

    python bench/quality.py                       # emoji (data/emoji) and mdi (data/mdi)
    python bench/quality.py --catalog emoji=/work/data/emoji --catalog mdi=/work/data/mdi
    python bench/quality.py --backbone hf:google/siglip2-base-patch16-224 --catalog mine=data/mine \
        model.overrides.embed_dim=768 model.overrides.matryoshka_dims=[256,768]

For each catalog: train PinCLIP with `configs/emoji-small.yaml` (only `data.catalog` and
`run_dir` change: no per-catalog tuning), the λ = 0 ablation (`loss.nbr_weight=0`) and the
open_clip baseline at its own best lr (5e-4, docs/evaluation.md), then `pinclip compare` them
with the training-free baselines on PinCLIP's split, and write bench/results/quality.json:

    {"<catalog>": {"related_cold": {"ours", "best_baseline", "best_baseline_name", "ratio",
                                    "ci": [lo, hi], ...},
                   "related_cold_image": {...}}}

`best_baseline` is the best *training-free* baseline (minilm, lite0, minilm+lite0, and with
`--backbone SPEC` the foundation's own zero-shot `zero-shot:SPEC`) on the task, curated
boards, Recall@10; the ratio and its CI are the report's paired bootstrap. The trained
comparisons (λ = 0, open_clip) are recorded beside it. `--backbone SPEC` trains PinCLIP and
λ = 0 on that foundation (`model.overrides.backbone`, docs/foundation.md): the same protocol
on a user's catalog and foundation model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from _common import RESULTS, write_result

TRAINING_FREE = ("minilm", "lite0", "minilm+lite0")
OPEN_CLIP_LR = 5e-4
TASKS = ("related_cold", "related_cold_image")


def _train_all(
    config: Path, catalog: str, out: Path, overrides: list[str], console, *, open_clip: bool
) -> dict:
    from pinclip.evaluate.baselines.open_clip import train_open_clip
    from pinclip.train import load_config, train

    base = [f"data.catalog={catalog}", "data.build_if_missing=null", *overrides]
    runs = {"PinCLIP": out / "pinclip", "λ=0": out / "clip-only"}
    extra = {"PinCLIP": [], "λ=0": ["loss.nbr_weight=0"]}
    seconds = {}
    for label, run in runs.items():
        if not (run / "final" / "config.json").is_file():
            started = time.perf_counter()
            train(load_config(config, [*base, f"run_dir={run}", *extra[label]]), console=console)
            seconds[label] = round(time.perf_counter() - started, 1)
    oc = out / "open-clip"
    if not (oc / "open_clip_model.safetensors").is_file() and not open_clip:
        return {"runs": {k: str(v) for k, v in runs.items()}, "train_s": seconds}
    if not (oc / "open_clip_model.safetensors").is_file():
        started = time.perf_counter()
        cfg = load_config(config, [*base, f"run_dir={oc}", f"optim.lr={OPEN_CLIP_LR}"])
        train_open_clip(cfg, oc, console=console)
        seconds["open_clip"] = round(time.perf_counter() - started, 1)
    return {
        "runs": {k: str(v) for k, v in runs.items()} | {"open_clip": str(oc)},
        "train_s": seconds,
    }


def _summary(
    results, ours: str, n_resamples: int, training_free: tuple[str, ...] = TRAINING_FREE
) -> dict:
    from pinclip.evaluate.bootstrap import ratio_ci
    from pinclip.evaluate.report import HEADLINE_METRIC

    mine = next(r for r in results if r.name == ours)
    out = {}
    for task in TASKS:
        a = mine.get(task, "curated")
        if a is None:
            continue
        scored = {
            r.name: r.get(task, "curated")
            for r in results
            if r.name != ours and r.get(task, "curated") is not None
        }
        free = {n: res for n, res in scored.items() if n in training_free}
        best = max(free, key=lambda n: free[n].summary[HEADLINE_METRIC][0])
        ratio, lo, hi = ratio_ci(
            a.per_query[HEADLINE_METRIC],
            free[best].per_query[HEADLINE_METRIC],
            n_resamples=n_resamples,
        )
        row = {
            "ours": round(a.summary[HEADLINE_METRIC][0], 4),
            "best_baseline": round(free[best].summary[HEADLINE_METRIC][0], 4),
            "best_baseline_name": best,
            "ratio": round(ratio, 3),
            "ci": [round(lo, 3), round(hi, 3)],
            "n_queries": a.n_queries,
            "all": {n: round(res.summary[HEADLINE_METRIC][0], 4) for n, res in scored.items()},
        }
        out[task] = row
    return out


def _tables(results, ours: str, n_resamples: int) -> dict:
    """What docs/evaluation.md's tables show (bench/docs_tables.py writes them from here):
    every model × task per relevance, ours vs every model, and what is n/a and why."""
    from pinclip.evaluate.report import headline, metrics_table
    from pinclip.evaluate.tasks import TASKS

    relevances = [r for r in ("curated", "all") if any(x.get("related_cold", r) for x in results)]
    return {
        "per_task": {
            rel: metrics_table(results, rel).to_dict(orient="index") for rel in relevances
        },
        "vs_every_model": [
            {
                "task": TASKS[h.task],
                "vs": h.reference,
                "ours": round(h.ours, 4),
                "theirs": round(h.theirs, 4),
                "ratio": round(h.ratio, 3),
                "ci": [round(h.low, 3), round(h.high, 3)],
            }
            for h in headline(results, ours, relevances[0], n_resamples=n_resamples)
        ],
        "not_applicable": {r.name: r.skipped for r in results if r.skipped},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/emoji-small.yaml")
    ap.add_argument(
        "--catalog",
        action="append",
        help="NAME=DIR (repeatable); default emoji=data/emoji and mdi=data/mdi",
    )
    ap.add_argument("--out", default="runs/quality", help="where the runs and reports go")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument(
        "--no-open-clip",
        action="append",
        default=[],
        metavar="CATALOG",
        help="do not train open_clip on CATALOG (an existing run is still compared)",
    )
    ap.add_argument(
        "--backbone",
        help="a foundation spec (docs/foundation.md): PinCLIP and λ=0 stand on it and its "
        "zero-shot joins the training-free baselines",
    )
    ap.add_argument(
        "overrides", nargs="*", help="key=value overrides for every run (e.g. a budget)"
    )
    args = ap.parse_args()
    console = Console(stderr=True)
    catalogs = dict(c.split("=", 1) for c in args.catalog or ["emoji=data/emoji", "mdi=data/mdi"])
    training_free = TRAINING_FREE
    if args.backbone:
        from pinclip.model.backbones import BACKBONES, split_spec

        args.overrides = [f"model.overrides.backbone={args.backbone}", *args.overrides]
        if "text" in BACKBONES.get(split_spec(args.backbone)[0]).towers:
            training_free = (*TRAINING_FREE, f"zero-shot:{args.backbone}")
    from pinclip.evaluate.compare import compare

    result, timing = {}, {}
    for name, root in catalogs.items():
        out = Path(args.out) / name
        console.rule(f"[bold]{name}: training PinCLIP, λ=0 and open_clip ({root})")
        trained = _train_all(
            Path(args.config),
            root,
            out,
            args.overrides,
            console,
            open_clip=name not in args.no_open_clip,
        )
        specs = [f"PinCLIP={trained['runs']['PinCLIP']}", f"λ=0={trained['runs']['λ=0']}"]
        if "open_clip" in trained["runs"]:
            specs.append(f"open_clip=open_clip:{trained['runs']['open_clip']}")
        specs += [*training_free, "random"]
        console.rule(f"[bold]{name}: pinclip compare")
        report, results = compare(
            specs,
            split_from=trained["runs"]["PinCLIP"],
            out_dir=out / "report",
            n_resamples=args.bootstrap,
            console=console,
        )
        result[name] = _summary(results, "PinCLIP", args.bootstrap, training_free)
        result[name]["tables"] = _tables(results, "PinCLIP", args.bootstrap)
        timing[name] = {"train_s": trained["train_s"], "compared": specs, "report": str(report)}
    path = write_result("quality", {**result, "_runs": timing, "_config": args.config})
    console.print(f"wrote {path} (figures also in {RESULTS})")


if __name__ == "__main__":
    main()
