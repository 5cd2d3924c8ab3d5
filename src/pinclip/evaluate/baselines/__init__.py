"""Baselines behind one plug-in interface (`Embedder`), resolved through one registry
(`BASELINES`): each baseline module registers itself when imported here."""

from . import open_clip, pinclip_model, pretrained, random, zero_shot  # noqa: F401  (register)
from .base import (
    BASELINES,
    Baseline,
    BaselineContext,
    Embedder,
    PinEmbeddings,
    baseline_help,
    create_baseline,
    list_baselines,
    register_baseline,
)
from .pinclip_model import PinCLIPEmbedder

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineContext",
    "Embedder",
    "PinCLIPEmbedder",
    "PinEmbeddings",
    "baseline_help",
    "create_baseline",
    "list_baselines",
    "register_baseline",
]
