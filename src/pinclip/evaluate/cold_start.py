"""The demo's quick cold-start table: the report's own related-pins figures for one run.

Not a second implementation: it runs `evaluate_embedder` on the two cold related-pins tasks
only, on the run's own split, under the report's headline relevance (curated boards where
the catalog has them), so the demo's table and the report's headline are the same numbers.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .baselines.pinclip_model import PinCLIPEmbedder
from .data import EvalData
from .tasks import evaluate_embedder

QUICK_TASKS = ("related_cold", "related_cold_image")


def evaluate_cold_start(
    run_dir: str | Path,
    *,
    checkpoint: str = "best",
    n_resamples: int = 200,
    console: Console | None = None,
) -> dict[str, float | str]:
    """Recall@10 of the run's cold pins, fused (image + text) and image-only queries, against
    every pin; relevant = shares a (curated, where there are any) board in the full graph."""
    data = EvalData.from_run(run_dir)
    embedder = PinCLIPEmbedder(run_dir, checkpoint=checkpoint, console=console)
    result = evaluate_embedder(embedder, data, n_resamples=n_resamples, tasks=QUICK_TASKS)
    rel = data.headline_relevance
    out: dict[str, float | str] = {"relevance": rel, "cold_pins": float(len(data.split.cold))}
    for task, key in zip(QUICK_TASKS, ("cold_recall@10", "cold_image_only_recall@10"), strict=True):
        res = result.get(task, rel)
        out[key] = res.summary["recall@10"][0] if res is not None else float("nan")
    return out
