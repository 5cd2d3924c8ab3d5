"""pinclip.data.builders: the shipped catalog builders (docs/datasets.md)."""

from .emoji import build_emoji_catalog
from .mdi import build_mdi_catalog
from .synthetic import build_synthetic_catalog

__all__ = ["build_emoji_catalog", "build_mdi_catalog", "build_synthetic_catalog"]
