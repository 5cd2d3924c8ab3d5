"""One ablation row of docs/evaluation.md: a switch trained at the short budget, scored on
validation and cold pins.

    python bench/ablation.py NAME CATALOG [OVERRIDE ...]      # e.g. tune-img data/emoji \
        model.overrides.image.tune_last_blocks=1

Trains `configs/emoji-small.yaml` with `data.catalog=CATALOG max_steps=60 val_every=60
optim.warmup_steps=10 threads=1` and the overrides (skipped when `OUT/CATALOG-NAME/final`
exists), then scores related-pins Recall@10 of the validation and the cold pins, fused
(`pin`) and image-only (`image`) queries, against every pin, relevant = shares a curated
board. Defaults are chosen on the validation columns only; the cold ones are reported.
Appends one JSON line per row to OUT/ablation.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rich.console import Console

PROTOCOL = ["max_steps=60", "val_every=60", "optim.warmup_steps=10", "threads=1"]


def score(run: Path) -> dict[str, float]:
    """Recall@10 (curated) of val and cold pins, fused and image-only, of the run's best model."""
    from pinclip.evaluate.baselines.pinclip_model import PinCLIPEmbedder
    from pinclip.evaluate.data import EvalData
    from pinclip.retrieval import related_pins_recall

    data = EvalData.from_run(run)
    emb = PinCLIPEmbedder(run).embed_pins(data)
    graph = data.relevance_graph(data.headline_relevance)
    out = {}
    for split in ("val", "cold"):
        pins = getattr(data.split, split)
        for kind in ("pin", "image"):
            q = getattr(emb, kind)
            out[f"{split}_{kind}"] = round(related_pins_recall(q[pins], emb.pin, graph, pins), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("catalog")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--config", default="configs/emoji-small.yaml")
    ap.add_argument("--out", default="runs/ablation")
    args = ap.parse_args()
    from pinclip.train import load_config, train

    run = Path(args.out) / f"{Path(args.catalog).name}-{args.name}"
    started, seconds = time.perf_counter(), None
    if not (run / "final" / "config.json").is_file():
        overrides = [f"data.catalog={args.catalog}", f"run_dir={run}", *PROTOCOL, *args.overrides]
        train(load_config(args.config, overrides), console=Console(stderr=True))
        seconds = round(time.perf_counter() - started, 1)
    row = {
        "name": args.name,
        "catalog": args.catalog,
        "overrides": args.overrides,
        "train_s": seconds,
        "load_avg_1min": round(os.getloadavg()[0], 2),
        **score(run),
    }
    with (Path(args.out) / "ablation.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
