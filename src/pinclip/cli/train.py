"""`pinclip train --config FILE [key=value …]`: run or resume a training run."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)


def train(
    overrides: list[str] = typer.Argument(
        None, help="Config overrides, e.g. optim.lr=1e-3 loss.nbr_weight=0"
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="YAML config (see configs/); defaults otherwise."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the run directory's latest checkpoint."
    ),
    device: str = typer.Option(
        None, "--device", help="auto, cpu, cuda, cuda:N or mps (the config's `device`)."
    ),
    precision: str = typer.Option(
        None, "--precision", help="auto, fp32, bf16 or fp16 (the config's `precision`)."
    ),
) -> None:
    """Train a PinCLIP model; works the same under `torchrun --nproc_per_node N`."""
    from pinclip.train import load_config
    from pinclip.train import train as run_training

    flags = [f"{k}={v}" for k, v in (("device", device), ("precision", precision)) if v]
    cfg = load_config(config, [*(overrides or []), *flags])
    result = run_training(cfg, resume=resume, console=console)
    if os.environ.get("RANK", "0") != "0":
        return
    console.print(
        f"[green]done[/]: {result.steps} steps in {result.seconds:.0f}s; best val related-pins "
        f"Recall@10 {result.best_val_recall:.4f}; model in {result.run_dir / 'best'}"
    )
