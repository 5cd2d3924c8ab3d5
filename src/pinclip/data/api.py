"""The catalog step of the Python API (`pinclip.build_catalog`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinclip.errors import PinclipError


def build_catalog(kind: str, out: str | Path, **options: Any) -> Path:
    """Build a shipped catalog (`emoji`, `mdi`, `synthetic`, ...) into `out`, like
    `pinclip catalog build KIND OUT`; `options` are the builder's keywords (pins=, seed=...)."""
    from pinclip.data import builders

    builder = getattr(builders, f"build_{kind}_catalog", None)
    if builder is None:
        kinds = sorted(n[6:-8] for n in builders.__all__ if n.endswith("_catalog"))
        raise PinclipError(f"unknown catalog kind {kind!r}; available: {kinds}")
    return Path(builder(out, **options))
