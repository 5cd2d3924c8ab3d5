"""`pinclip evaluate`, `pinclip compare` and `pinclip train-open-clip`: thin faces over
`pinclip.evaluate` (see docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pinclip.errors import require_extra

from ._errors import print_table
from ._help import lazy_help

console = Console(stderr=True)


def _print_result(result) -> None:
    from pinclip.evaluate.tasks import TASKS

    table = Table(title=f"{result.name}: every task (95% bootstrap CIs over queries)")
    for column in (
        "task",
        "relevance",
        "queries",
        "Recall@1",
        "Recall@10",
        "Recall@50",
        "nDCG@10",
        "mAP@10",
        "MRR",
    ):
        table.add_column(column, justify="left" if column in ("task", "relevance") else "right")
    for (task, rel), res in result.results.items():
        cells = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in res.summary.values()]
        table.add_row(TASKS[task], rel, str(res.n_queries), *cells)
    print_table(console, table)


def evaluate(
    run_or_model: Path = typer.Argument(
        ..., help="A run dir (uses best/) or a model dir (e.g. runs/x/best)."
    ),
    catalog: Path = typer.Option(
        None, "--catalog", help="Catalog dir; default: the run's own data.catalog."
    ),
    out: Path = typer.Option(None, "--out", help="Results JSON; default RUN/eval/results.json."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    device: str = typer.Option("cpu", help="PinCLIP models run on: cpu, cuda, cuda:N, mps, auto."),
    task: list[str] | None = typer.Option(
        None, "--task", help="Only this task (repeatable; see --help); default: every task."
    ),
) -> None:
    """Score a PinCLIP model on every retrieval task (docs/evaluation.md), on its run's split."""
    require_extra("eval", "pinclip evaluate")
    from pinclip.evaluate.compare import evaluate_model

    result, path = evaluate_model(
        run_or_model,
        catalog=catalog,
        out=out,
        n_resamples=bootstrap,
        seed=seed,
        device=device,
        console=console,
        tasks=task or None,
    )
    _print_result(result)
    console.print(f"results: {path}")


def _models_help() -> str:
    """The spec forms, from the baseline registry (imported only for --help)."""
    from pinclip.evaluate.baselines import baseline_help

    return f"Specs: [LABEL=]RUN_DIR | MODEL_DIR | {baseline_help()}. The first is 'ours'."


def _task_help() -> str:
    """The evaluation tasks, from the task registry (imported only for --help)."""
    from pinclip.evaluate.tasks import EVAL_TASKS

    return f"Only this task (repeatable): {EVAL_TASKS.help_text()}. Default: every task."


EVALUATE_COMMAND = lazy_help(task=_task_help)
COMPARE_COMMAND = lazy_help(models=_models_help)


def compare(
    models: list[str] = typer.Argument(..., help="Specs (see --help). The first is 'ours'."),
    split_from: Path = typer.Option(
        ..., "--split-from", help="The PinCLIP run whose split (and catalog) all models use."
    ),
    out: Path = typer.Option(Path("runs/report"), "--out", help="Report directory."),
    catalog: Path = typer.Option(None, "--catalog", help="Override the run's catalog dir."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, help="Bootstrap and plot seed."),
    device: str = typer.Option("cpu", help="PinCLIP models run on: cpu, cuda, cuda:N, mps, auto."),
) -> None:
    """Run models and baselines on one split; write report.md, report.html and PNG plots."""
    require_extra("eval", "pinclip compare")
    from pinclip.evaluate.compare import compare as run_compare
    from pinclip.evaluate.report import HEADLINE_METRIC, metrics_table

    report, results = run_compare(
        models,
        split_from=split_from,
        out_dir=out,
        catalog=catalog,
        n_resamples=bootstrap,
        seed=seed,
        device=device,
        console=console,
    )
    rel = "curated" if results and results[0].get("related_cold", "curated") is not None else "all"
    df = metrics_table(results, rel)
    table = Table(title=f"{HEADLINE_METRIC} [95% CI], relevance = {rel} boards")
    table.add_column("model")
    for column in df.columns:
        table.add_column(column, justify="right")
    for name, row in df.iterrows():
        table.add_row(name, *row.tolist())
    print_table(console, table)
    first = next(
        (line for line in report.read_text().splitlines() if line.startswith("**Headline")), None
    )
    if first:
        console.print(first.replace("**", ""))
    console.print(f"report: {report} (and {report.with_suffix('.html')})")


def train_open_clip(
    config: Path = typer.Argument(
        ...,
        help="A pinclip train config (or a run's config.yaml): its catalog, split, "
        "epochs, batch size and lr are reused.",
    ),
    out: Path = typer.Option(..., "--out", help="Run dir for the open_clip baseline."),
    overrides: list[str] = typer.Argument(
        None, help="key=value overrides of the config, e.g. max_steps=4"
    ),
    unlocked_groups: int = typer.Option(
        1, help="Trailing EfficientNet stages that train (open_clip lock_image_tower)."
    ),
    unlocked_text_layers: int = typer.Option(
        0, help="Trailing MiniLM layers that train (open_clip lock_text_tower)."
    ),
) -> None:
    """Train the open_clip baseline with open_clip's own loop on the same data and budget."""
    require_extra("eval", "pinclip train-open-clip")
    from pinclip.evaluate.baselines.open_clip import train_open_clip as run
    from pinclip.train import load_config

    cfg = load_config(config, overrides or [])
    path = run(
        cfg,
        out,
        unlocked_groups=unlocked_groups,
        unlocked_text_layers=unlocked_text_layers,
        console=console,
    )
    console.print(
        f"open_clip baseline: {path} (compare it with `pinclip compare ... open_clip:{path}`)"
    )
