"""`pinclip demo`: the main job on the shipped default data (what `make demo` runs).

Builds the emoji catalog if it is missing, trains PinCLIP and the λ = 0 (plain CLIP-style)
ablation with the same budget, compares them on cold-start related pins, and prints where
everything is.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def demo(
    overrides: list[str] = typer.Argument(
        None, help="Overrides applied to both runs, e.g. epochs=2"
    ),
    configs: Path = typer.Option(
        Path("configs"), help="Directory holding emoji-small.yaml and emoji-clip-only.yaml."
    ),
    report: Path = typer.Option(Path("runs/emoji-report"), help="Where the comparison report goes."),
    open_clip: Path = typer.Option(
        Path("runs/emoji-open-clip"),
        help="An open_clip baseline run, included when it exists "
        "(train it once: pinclip train-open-clip configs/emoji-small.yaml --out DIR).",
    ),
) -> None:
    """Build the emoji catalog if missing, train PinCLIP and its λ=0 ablation, compare them."""
    from pinclip.evaluate.cold_start import evaluate_cold_start
    from pinclip.train import ConfigError, load_config, train

    started = time.perf_counter()
    runs = {}
    for label, name in (
        ("PinCLIP (λ=1)", "emoji-small.yaml"),
        ("CLIP-style (λ=0)", "emoji-clip-only.yaml"),
    ):
        try:
            cfg = load_config(configs / name, overrides or [])
        except ConfigError as err:
            console.print(
                f"[red]error:[/] {err} (run `make demo` from the repository root, or pass --configs)"
            )
            raise typer.Exit(2) from None
        console.rule(f"[bold]{label}: training {cfg.run_dir}")
        result = train(cfg, console=console)
        runs[label] = (cfg, result, evaluate_cold_start(cfg.run_dir, console=console))

    table = Table(title="Cold-start related pins (held-out pins, all pins as candidates)")
    for column in (
        "model",
        "Recall@10 (image+text)",
        "Recall@10 (image only)",
        "best val R@10",
        "train time",
    ):
        table.add_column(column, justify="right" if column != "model" else "left")
    for label, (_, result, scores) in runs.items():
        table.add_row(
            label,
            f"{scores['cold_recall@10']:.4f}",
            f"{scores['cold_image_only_recall@10']:.4f}",
            f"{result.best_val_recall:.4f}",
            f"{result.seconds:.0f}s",
        )
    console.print(table)
    (ours, base) = (runs[label][2]["cold_recall@10"] for label in runs)
    verdict = "beats" if ours > base else "does NOT beat"
    console.print(
        f"PinCLIP {verdict} the λ=0 run on cold-start Recall@10: {ours:.4f} vs {base:.4f}"
        f" ({ours / max(base, 1e-9):.2f}×)."
    )
    cfg = runs["PinCLIP (λ=1)"][0]
    console.print(
        f"catalog: {cfg.data.catalog} (check it: pinclip catalog check {cfg.data.catalog})"
    )
    for label, (run_cfg, _, _) in runs.items():
        console.print(
            f"{label}: {run_cfg.run_dir}/best (model), metrics.jsonl, config.yaml, checkpoints/"
        )
    from pinclip.serve import prepare_serving  # embed + index the demo catalog with the demo model

    _, info, command = prepare_serving(
        f"{cfg.run_dir}/best", cfg.data.catalog, f"{cfg.run_dir}/serving"
    )
    console.print(f"index: recall@10 {info['recall@10']:.4f} vs exact, {info['qps']:.0f} queries/s")
    console.print(f"serve the demo model: [bold]{command}[/]  (then open http://127.0.0.1:8000/)")
    _report(runs, report, open_clip)
    console.print(f"demo finished in {time.perf_counter() - started:.0f}s")


def _report(runs: dict, out: Path, open_clip: Path) -> None:
    """Every baseline on the PinCLIP run's split, and the report people open."""
    from pinclip.evaluate.compare import compare

    ours, ablation = (str(runs[label][0].run_dir) for label in runs)
    specs = [f"PinCLIP={ours}", f"λ=0={ablation}", "minilm", "lite0", "minilm+lite0", "random"]
    if (open_clip / "open_clip_model.safetensors").is_file():
        specs.insert(2, f"open_clip=open_clip:{open_clip}")
    else:
        console.print(
            f"[yellow]no open_clip baseline at {open_clip}: train it once with "
            f"`pinclip train-open-clip configs/emoji-small.yaml --out {open_clip}` (~10 min on 2 cores)[/]"
        )
    console.rule("[bold]evaluation: every task, every baseline, same split")
    path, _ = compare(specs, split_from=ours, out_dir=out, console=console)
    headline = next(
        (line for line in path.read_text().splitlines() if line.startswith("**Headline")), ""
    )
    console.print(headline.replace("**", ""))
    console.print(f"report: {path} and {path.with_suffix('.html')} (plots next to them)")
