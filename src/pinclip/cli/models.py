"""`pinclip models`: list the model presets with their parameter counts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def list_models() -> None:
    """List the model presets with their parameter counts (total and trainable)."""
    from pinclip.model import list_presets, preset_info

    table = Table(title="pinclip model presets", caption="layers = image / text / fusion")
    for column in ("preset", "params", "trainable", "width", "emb", "image", "stem", "text"):
        table.add_column(
            column, justify="left" if column in ("preset", "stem", "text") else "right"
        )
    table.add_column("layers")
    for name in list_presets():
        info = preset_info(name)
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
        )
    Console().print(table)
