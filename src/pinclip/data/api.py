"""The catalog step of the Python API (`pinclip.build_catalog`), and building a missing
catalog for a run (`data.build_if_missing`); both read the builder registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from pinclip.errors import ConfigError


def build_catalog(kind: str, out: str | Path, **options: Any) -> Path:
    """Build a registered catalog (`emoji`, `mdi`, `synthetic`, ...) into `out`, like
    `pinclip catalog build KIND OUT`; `options` are the builder's options (pins=, seed=...,
    its options dataclass) and `progress=` / `overwrite=`."""
    from pinclip.data.builders import BUILDERS
    from pinclip.data.builders.base import COMMON

    builder = BUILDERS.get(kind)
    common = {key: options.pop(key) for key in COMMON if key in options}
    return builder.run(out, builder.make_options(kind, **options), **common)


def build_if_missing(root: str | Path, builder: str | None, console: Console | None = None) -> None:
    """Build the catalog `root` with the registered `builder`'s default options when the
    directory is missing (`data.build_if_missing`); without a builder, say how to make one."""
    from pinclip.data.builders import BUILDERS

    from .validate import CatalogError

    root = Path(root)
    if root.is_dir():
        return
    if not builder:
        raise CatalogError(
            f"{root}: no such catalog directory; build one with "
            f"`pinclip catalog build emoji {root}` or set data.catalog=PATH"
        )
    try:
        entry = BUILDERS.entry(builder)
    except ConfigError as err:
        raise CatalogError(f"{root}: no such catalog, and data.build_if_missing: {err}") from None
    (console or Console(stderr=True)).print(
        f"[bold]catalog {root} is missing: building the {entry.name} catalog[/]"
    )
    entry.value.run(root)
