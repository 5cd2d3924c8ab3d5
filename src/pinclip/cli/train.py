"""`pinclip train --config FILE [key=value …]`: run or resume a training run."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from ._errors import print_table

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
    print_config: bool = typer.Option(
        False,
        "--print-config",
        help="Print every config key: its value (file and overrides applied), default and "
        "doc; then exit without training.",
    ),
    distributed: str = typer.Option(
        None,
        "--distributed",
        help="Under torchrun: ddp (a replica per rank) or fsdp (FSDP2 shards, for a model "
        "that does not fit one GPU) (the config's `distributed`).",
    ),
) -> None:
    """Train a PinCLIP model; works the same under `torchrun --nproc_per_node N`."""
    from pinclip.train import load_config
    from pinclip.train import train as run_training

    given = (("device", device), ("precision", precision), ("distributed", distributed))
    flags = [f"{k}={v}" for k, v in given if v]
    cfg = load_config(config, [*(overrides or []), *flags])
    if print_config:
        _print_config(cfg)
        return
    result = run_training(cfg, resume=resume, console=console)
    if os.environ.get("RANK", "0") != "0":
        return
    console.print(
        f"[green]done[/]: {result.steps} steps in {result.seconds:.0f}s; best val related-pins "
        f"Recall@10 {result.best_val_recall:.4f}; model in {result.run_dir / 'best'}"
    )


def _print_config(cfg) -> None:
    """Every key of the resolved config beside its default and its doc (the source comments)."""
    from rich.markup import escape
    from rich.table import Table

    from pinclip._typed_config import describe

    table = Table(title="Training config (* = differs from the default)")
    for column in ("key", "value", "default", "doc"):
        table.add_column(column, overflow="fold", max_width=90 if column == "doc" else None)
    for key, value, default, doc in describe(cfg, type(cfg)()):
        mark = "*" if value != default else ""
        table.add_row(f"{mark}{key}", _show(value), _show(default), escape(doc))
    print_table(Console(), table)


def _show(value) -> str:
    """A config value as YAML writes it (null, true, [a, b]), escaped for Rich markup."""
    import yaml
    from rich.markup import escape

    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return escape(text.removesuffix("\n").removesuffix("\n...").strip())
