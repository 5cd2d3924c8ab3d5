"""`pinclip demo`: the main job on the shipped default data (what `make demo` runs).

Builds the emoji catalog if it is missing, trains PinCLIP and the λ = 0 (plain CLIP-style)
ablation with the same budget, evaluates them and the training-free baselines once on one
split (the report; the quick cold-start table is read from the same results), embeds and
indexes the catalog, and ends with where everything is and the `pinclip serve` command.

Work is shared: the frozen features are computed once into the feature store by the first
run; the second run, both models' evaluation and the `minilm` / `lite0` baselines read
them back (`StoredFeatures`). When stderr is not a terminal a plain progress line appears
at least every few seconds (`pinclip.progress`).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._errors import fail, print_table

console = Console(stderr=True)

# (table label, report label, config file)
RUNS = (
    ("PinCLIP", "PinCLIP", "emoji-small.yaml"),
    ("CLIP-style (λ=0)", "λ=0", "emoji-clip-only.yaml"),
)


def demo(
    overrides: list[str] = typer.Argument(
        None, help="Overrides applied to both runs, e.g. epochs=2"
    ),
    configs: Path = typer.Option(
        Path("configs"), help="Directory holding emoji-small.yaml and emoji-clip-only.yaml."
    ),
    report: Path = typer.Option(
        Path("runs/emoji-report"), help="Where the comparison report goes."
    ),
    open_clip: Path = typer.Option(
        Path("runs/emoji-open-clip"),
        help="An open_clip baseline run, included when it exists "
        "(train it once: pinclip train-open-clip configs/emoji-small.yaml optim.lr=5e-4 --out DIR).",
    ),
) -> None:
    """Build the emoji catalog if missing, train PinCLIP and its λ=0 ablation, compare them."""
    from pinclip.errors import require_extra
    from pinclip.progress import Heartbeat

    for extra in ("eval", "serve"):  # the report, then embed + index: fail now, not at the end
        require_extra(extra, "pinclip demo")

    started = time.perf_counter()
    with Heartbeat("demo", console) as beat:  # plain "where is it" lines when stderr is a log
        runs = _train_both(configs, overrides or [], beat)
        beat.set("evaluation (every task, every model and baseline, one split)")
        report_path, results = _report(runs, report, open_clip)
        _print_comparison(runs, results)
        ours = runs[RUNS[0][0]][0]
        beat.set("embedding the catalog and building the index")
        info, command = _serving(ours, console)
    console.rule("[bold]where everything is")
    console.print(
        f"catalog: {ours.data.catalog} (check it: pinclip catalog check {ours.data.catalog})"
    )
    for label, (cfg, _) in runs.items():
        console.print(
            f"{label}: {cfg.run_dir}/best (model), metrics.jsonl, config.yaml, checkpoints/"
        )
    console.print(
        f"report: {report_path} and {report_path.with_suffix('.html')} (plots beside them)"
    )
    console.print(f"index: recall@10 {info['recall@10']:.4f} vs exact, {info['qps']:.0f} queries/s")
    console.print(f"demo finished in {time.perf_counter() - started:.0f}s")
    console.print(f"serve the demo model: [bold]{command}[/]  (then open http://127.0.0.1:8000/)")


def _train_both(configs: Path, overrides: list[str], beat) -> dict:
    from pinclip.train import ConfigError, load_config, train

    runs = {}
    for i, (label, _, name) in enumerate(RUNS):
        try:
            cfg = load_config(configs / name, overrides)
        except ConfigError as err:
            fail(f"{err} (run `make demo` from the repository root, or pass --configs)")
        console.rule(f"[bold]{label}: training {cfg.run_dir}")
        first = " (the first run also computes the frozen features)" if i == 0 else ""
        beat.set(f"training {label}{first}")
        runs[label] = (cfg, train(cfg, console=console))
    return runs


def _serving(ours, console: Console) -> tuple[dict, str]:
    """Embed the demo catalog with the PinCLIP model and index it (what `pinclip serve` reads)."""
    from pinclip.progress import Progress
    from pinclip.serve import prepare_serving

    with Progress(console=console) as progress:
        task = progress.add_task("embed the catalog for serving", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        _, info, command = prepare_serving(
            f"{ours.run_dir}/best",
            ours.data.catalog,
            f"{ours.run_dir}/serving",
            progress=advance,
            features=Path(ours.data.cache_dir) / "features",  # the store training built
        )
    return info, command


def _print_comparison(runs: dict, results: list) -> None:
    """The quick cold-start table: the report's own figures for the two trained runs."""
    by_name = {r.name: r for r in results}
    # the headline relevance: curated boards where the catalog has them (EvalData.relevances)
    rel = "curated" if by_name[RUNS[0][1]].get("related_cold", "curated") else "all"
    boards = "a curated board" if rel == "curated" else "any board"
    table = Table(
        title=f"Cold-start related pins (held-out pins, all pins as candidates, relevant = shares "
        f"{boards}: the report's headline figure)"
    )
    for column in (
        "model",
        "Recall@10 (image+text)",
        "Recall@10 (image only)",
        "best val R@10",
        "train time",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")

    def recall(label: str, task: str) -> float:
        res = by_name[label].get(task, rel)
        return res.summary["recall@10"][0] if res is not None else float("nan")

    for label, name, _ in RUNS:
        result = runs[label][1]
        table.add_row(
            label,
            f"{recall(name, 'related_cold'):.4f}",
            f"{recall(name, 'related_cold_image'):.4f}",
            f"{result.best_val_recall:.4f}",
            f"{result.seconds:.0f}s",
        )
    print_table(console, table)
    console.print(verdict_line(results, rel))


def verdict_line(results: list, relevance: str) -> str:
    """PinCLIP vs the λ=0 run on cold related pins, read by the report's CI rule (the same
    paired bootstrap ratio and `ci_reading`), not from the two point estimates."""
    from pinclip.evaluate.report import ci_reading, headline

    (_, ours, _), (_, base, _) = RUNS
    row = next(
        h
        for h in headline(results, ours, relevance)
        if h.task == "related_cold" and h.reference == base
    )
    return (
        f"PinCLIP on cold-start Recall@10: {row.ours:.4f} vs {row.theirs:.4f} for the λ=0 run, "
        f"{row.ratio:.2f}× [95% CI {row.low:.2f}–{row.high:.2f}]: "
        f"{ci_reading(row.low, row.high, 'the λ=0 run')}."
    )


def _report(runs: dict, out: Path, open_clip: Path) -> tuple[Path, list]:
    """Both runs and every baseline on the PinCLIP run's split, and the report people open."""
    from pinclip.evaluate.compare import compare

    (ours, ours_name), (ablation, ablation_name) = (
        (str(runs[label][0].run_dir), name) for label, name, _ in RUNS
    )
    specs = [
        f"{ours_name}={ours}",
        f"{ablation_name}={ablation}",
        "minilm",
        "lite0",
        "minilm+lite0",
        "random",
    ]
    if (open_clip / "open_clip_model.safetensors").is_file():
        specs.insert(2, f"open_clip=open_clip:{open_clip}")
    else:
        console.print(
            f"[yellow]no open_clip baseline at {open_clip}: train it once with "
            f"`pinclip train-open-clip configs/emoji-small.yaml optim.lr=5e-4 --out {open_clip}` "
            "(10-20 min on 2 cores; 5e-4 suits open_clip better than our 2e-3)[/]"
        )
    console.rule("[bold]evaluation: every task, every baseline, same split")
    path, results = compare(specs, split_from=ours, out_dir=out, console=console)
    headline = next(
        (line for line in path.read_text().splitlines() if line.startswith("**Headline")), ""
    )
    console.print(headline.replace("**", ""))
    return path, results
