"""`pinclip models`: the presets and which parts load pretrained weights; `pinclip push-to-hub`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._errors import print_table


def list_models() -> None:
    """List the model presets: parameter counts and which parts start pretrained."""
    from pinclip.model import list_presets, preset_info

    table = Table(
        title="pinclip model presets",
        caption="layers = image / text / fusion. Pretrained weights load offline from pip "
        "packages; adapter layers, fusion layers and heads always start random: train them "
        "(pinclip train) or load a trained model (PinCLIP.from_pretrained).",
    )
    for column in ("preset", "params", "trainable", "width", "emb", "image", "stem", "text"):
        table.add_column(
            column, justify="left" if column in ("preset", "stem", "text") else "right"
        )
    table.add_column("layers")
    table.add_column("pretrained parts")
    for name in list_presets():
        info = preset_info(name)
        pretrained = [part for part, source in info["pretrained_parts"].items() if source]
        table.add_row(
            name,
            f"{info['parameters'] / 1e6:.2f}M",
            f"{info['trainable'] / 1e6:.2f}M",
            str(info["width"]),
            str(info["embed_dim"]),
            f"{info['image_size']}px",
            info["stem"],
            info["text_encoder"],
            info["layers"],
            ", ".join(pretrained) or "none (all random)",
        )
    print_table(Console(), table)
    print_table(Console(), backbone_table())


def backbone_table() -> Table:
    """The backbone families a config's `backbone: FAMILY:ARG` can name (one registry)."""
    from pinclip.model.backbones import BACKBONES

    table = Table(
        title="backbone families (model.overrides.backbone=FAMILY:ARG)",
        caption="Two-tower families start aligned: heads from the backbone's projections, "
        "so the untrained model embeds as the foundation does. See docs/foundation.md.",
    )
    for column in ("family", "towers", "example", "what"):
        table.add_column(column)
    for entry in BACKBONES:
        table.add_row(entry.name, "+".join(entry.value.towers), entry.value.example, entry.help)
    return table


def push_to_hub(
    model: Path = typer.Argument(..., help="A run dir (its best/ is pushed) or a model dir."),
    repo_id: str = typer.Argument(..., help="Hub repo, org/name (created if missing)."),
    report: Path = typer.Option(
        None, "--report", help="`pinclip compare` report dir: its headline table goes in the card."
    ),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
) -> None:
    """Upload a model and its model card (data, objective, results, licences) to the Hub."""
    from pinclip.model import PinCLIP

    run_dir = None
    if (model / "best" / "config.json").is_file():
        run_dir, model = model, model / "best"
    elif (model.parent / "config.yaml").is_file():
        run_dir = model.parent
    url = PinCLIP.from_pretrained(model).push_to_hub(
        repo_id, run_dir=run_dir, report=report, private=private or None
    )
    Console(stderr=True).print(f"[green]pushed[/]: {url}")


def merge(
    model: Path = typer.Argument(
        ..., help="A model dir on a VLM backbone (hf-vlm:) with LoRA adapters, or its run dir."
    ),
    out: Path = typer.Argument(..., help="The merged model folder (written whole or not at all)."),
) -> None:
    """Fold a VLM backbone's LoRA adapters into its base weights, for serving: OUT holds the
    merged base (base/, with its processor) and the heads; it loads without peft."""
    from pinclip.atomic import atomic_dir
    from pinclip.errors import InputError
    from pinclip.model import PinCLIP

    if (model / "best" / "config.json").is_file():
        model = model / "best"
    loaded = PinCLIP.from_pretrained(model)
    if not loaded.is_vlm:
        raise InputError(f"{model} has no VLM backbone (hf-vlm:): nothing to merge")
    with atomic_dir(out) as tmp:
        loaded.save_merged(tmp)
    Console(stderr=True).print(f"[green]merged[/]: {out}")
