"""Baselines behind one plug-in interface (`Embedder`), looked up by name."""

from . import open_clip, pretrained, random  # noqa: F401  (register the built-in baselines)
from .base import Embedder, PinEmbeddings, create_baseline, list_baselines, register_baseline
from .pinclip_model import PinCLIPEmbedder

__all__ = [
    "Embedder",
    "PinCLIPEmbedder",
    "PinEmbeddings",
    "create_baseline",
    "list_baselines",
    "register_baseline",
]
