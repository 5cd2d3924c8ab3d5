"""`pinclip demo`: the main job on the shipped default data (what `make demo` runs).

Builds the emoji catalog if it is missing, trains PinCLIP and the λ = 0 (plain CLIP-style)
ablation with the same budget, compares them on cold-start related pins, writes the full
evaluation report, embeds and indexes the catalog, and ends with where everything is and
the `pinclip serve` command.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._errors import fail

console = Console(stderr=True)

RUNS = (("PinCLIP", "emoji-small.yaml"), ("CLIP-style (λ=0)", "emoji-clip-only.yaml"))


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
        _print_comparison(runs)
        beat.set("evaluation report (every task, every baseline)")
        report_path = _report(runs, report, open_clip)
        ours = runs[RUNS[0][0]][0]
        from pinclip.serve import prepare_serving  # embed + index the demo catalog

        beat.set("embedding the catalog and building the index")
        _, info, command = prepare_serving(
            f"{ours.run_dir}/best", ours.data.catalog, f"{ours.run_dir}/serving"
        )
    console.rule("[bold]where everything is")
    console.print(
        f"catalog: {ours.data.catalog} (check it: pinclip catalog check {ours.data.catalog})"
    )
    for label, (cfg, _, _) in runs.items():
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
    from pinclip.evaluate.cold_start import evaluate_cold_start
    from pinclip.train import ConfigError, load_config, train

    runs = {}
    for label, name in RUNS:
        try:
            cfg = load_config(configs / name, overrides)
        except ConfigError as err:
            fail(f"{err} (run `make demo` from the repository root, or pass --configs)")
        console.rule(f"[bold]{label}: training {cfg.run_dir}")
        beat.set(f"training {label}")
        result = train(cfg, console=console)
        beat.set(f"cold-start check of {label}")
        runs[label] = (cfg, result, evaluate_cold_start(cfg.run_dir, console=console))
    return runs


def _print_comparison(runs: dict) -> None:
    rel = next(iter(runs.values()))[2]["relevance"]
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
    for label, (_, result, scores) in runs.items():
        table.add_row(
            label,
            f"{scores['cold_recall@10']:.4f}",
            f"{scores['cold_image_only_recall@10']:.4f}",
            f"{result.best_val_recall:.4f}",
            f"{result.seconds:.0f}s",
        )
    console.print(table)
    ours, base = (runs[label][2]["cold_recall@10"] for label, _ in RUNS)
    verdict = "beats" if ours > base else "does NOT beat"
    console.print(
        f"PinCLIP {verdict} the λ=0 run on cold-start Recall@10: {ours:.4f} vs {base:.4f}"
        f" ({ours / max(base, 1e-9):.2f}×)."
    )


def _report(runs: dict, out: Path, open_clip: Path) -> Path:
    """Every baseline on the PinCLIP run's split, and the report people open."""
    from pinclip.evaluate.compare import compare

    ours, ablation = (str(runs[label][0].run_dir) for label, _ in RUNS)
    specs = [f"PinCLIP={ours}", f"λ=0={ablation}", "minilm", "lite0", "minilm+lite0", "random"]
    if (open_clip / "open_clip_model.safetensors").is_file():
        specs.insert(2, f"open_clip=open_clip:{open_clip}")
    else:
        console.print(
            f"[yellow]no open_clip baseline at {open_clip}: train it once with "
            f"`pinclip train-open-clip configs/emoji-small.yaml optim.lr=5e-4 --out {open_clip}` "
            "(10-20 min on 2 cores; 5e-4 suits open_clip better than our 2e-3)[/]"
        )
    console.rule("[bold]evaluation: every task, every baseline, same split")
    path, _ = compare(specs, split_from=ours, out_dir=out, console=console)
    headline = next(
        (line for line in path.read_text().splitlines() if line.startswith("**Headline")), ""
    )
    console.print(headline.replace("**", ""))
    return path
