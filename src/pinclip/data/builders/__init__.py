"""pinclip.data.builders: the shipped catalog builders (docs/datasets.md).

Each builder module registers itself in `BUILDERS` (`base.register_builder`) when imported
here; adding a builder is its module plus its import line below (docs/architecture.md).
"""

from .base import BUILDERS, CatalogBuilder, register_builder
from .emoji import build_emoji_catalog
from .mdi import build_mdi_catalog
from .synthetic import build_synthetic_catalog

__all__ = [
    "BUILDERS",
    "CatalogBuilder",
    "build_emoji_catalog",
    "build_mdi_catalog",
    "build_synthetic_catalog",
    "register_builder",
]
