"""A foundation transfer on real catalogs, offline (docs/evaluation.md, "Standing on a
foundation"): train a CLIP-style foundation (λ = 0) on mdi, then on emoji's split compare

  (a) that foundation zero-shot          `zero-shot:pinclip:RUN`
  (b) fine-tuned on it, λ = 0            backbone=pinclip:RUN, loss.nbr_weight=0
  (c) fine-tuned on it, default λ        backbone=pinclip:RUN
  (d) today's default run                configs/emoji-small.yaml (Lite0 + MiniLM)

with `pinclip compare`, and write cold related-pins Recall@10 with its 95% CI and the median
seconds per training step of each to bench/results/foundation.json.

    python bench/foundation.py [--root runs/foundation] [--mdi-epochs 6]

Resumable: a stage whose output exists is skipped (a run resumes from its last checkpoint).
Run it whole under the shared lock: `flock /tmp/pinclip-heavy.lock python bench/foundation.py`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

CONFIG = "configs/emoji-small.yaml"


def heavy(*cmd: str) -> None:
    """One `pinclip` stage in this interpreter's environment."""
    print("$", " ".join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", "pinclip", *cmd], check=True)


def train(run_dir: Path, *overrides: str) -> None:
    if (run_dir / "final" / "config.json").is_file():
        return
    resume = ["--resume"] if (run_dir / "checkpoints").is_dir() else []
    heavy("train", "-c", CONFIG, f"run_dir={run_dir}", *overrides, *resume)


def step_seconds(run_dir: Path, batch: int = 64) -> float | None:
    """Median wall seconds of a training step (metrics.jsonl), None without training."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rates = [json.loads(line).get("samples_per_s") for line in path.open()]
    seconds = [batch / r for r in rates if r]  # the rate is batch_size / step seconds
    return float(np.median(seconds)) if seconds else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/foundation"))
    parser.add_argument("--mdi-epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench/results/foundation.json"))
    args = parser.parse_args()
    root = args.root
    for name in ("mdi", "emoji"):
        if not (Path("data") / name / "catalog.json").is_file():
            heavy("catalog", "build", name, f"data/{name}")
    foundation = root / "mdi-foundation"
    train(
        foundation,
        "data.catalog=data/mdi",
        "data.build_if_missing=mdi",
        "loss.nbr_weight=0",
        f"epochs={args.mdi_epochs}",
    )
    spec = f"pinclip:{foundation / 'final'}"
    runs = {
        "(d) default (Lite0+MiniLM)": (root / "emoji-default", []),
        "(b) foundation fine-tuned λ=0": (
            root / "emoji-fm-lambda0",
            [f"model.overrides.backbone={spec}", "loss.nbr_weight=0"],
        ),
        "(c) foundation fine-tuned default λ": (
            root / "emoji-fm-default",
            [f"model.overrides.backbone={spec}"],
        ),
    }
    for run_dir, overrides in runs.values():
        train(run_dir, *overrides)
    report = root / "report"
    if not (report / "results").is_dir():
        specs = [f"{name}={run_dir}" for name, (run_dir, _) in runs.items()]
        specs.append(f"(a) foundation zero-shot=zero-shot:{spec}")
        heavy(
            "compare",
            *specs,
            "--split-from",
            str(root / "emoji-default"),
            "--out",
            str(report),
        )
    rows = []
    for path in sorted((report / "results").glob("*.json")):
        result = json.loads(path.read_text())
        cold = result["tasks"]["related_cold"]
        rel = "curated" if "curated" in cold else next(iter(cold))
        recall = cold[rel]["metrics"]["recall@10"]
        mean, (low, high) = recall["mean"], recall["ci95"]
        run_dir = runs.get(result["model"], (None,))[0]
        seconds = step_seconds(run_dir) if run_dir else None
        rows.append(
            {"name": result["model"], "related_cold": mean, "ci": [low, high], "seconds": seconds}
        )
    rows.sort(key=lambda r: r["name"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"catalog": "emoji", "rows": rows}, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
