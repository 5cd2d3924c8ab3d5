"""The evaluation steps of the Python API: `pinclip.evaluate` and `pinclip.compare`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pinclip.errors import require_extra


def evaluate(
    run_or_model: str | Path,
    *,
    catalog: str | Path | None = None,
    out: str | Path | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
):
    """Score a run (its best/) or model dir on every retrieval task (or `tasks`) of its
    run's split (`pinclip evaluate`); writes RUN/eval/results.json and returns the EvalResult."""
    require_extra("eval", "pinclip.evaluate")
    from pinclip.evaluate.compare import evaluate_model

    result, _ = evaluate_model(
        run_or_model, catalog=catalog, out=out, n_resamples=bootstrap, seed=seed, tasks=tasks
    )
    return result


def compare(
    models: Sequence[str],
    *,
    split_from: str | Path,
    out: str | Path = "runs/report",
    catalog: str | Path | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> tuple[Path, list]:
    """Models and baselines on one split, with the report (`pinclip compare`);
    returns (report.md, results)."""
    require_extra("eval", "pinclip.compare")
    from pinclip.evaluate.compare import compare as run_compare

    return run_compare(
        list(models),
        split_from=split_from,
        out_dir=out,
        catalog=catalog,
        n_resamples=bootstrap,
        seed=seed,
    )
