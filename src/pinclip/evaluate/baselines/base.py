"""The plug-in interface every evaluated model implements, and the name registry.

An `Embedder` turns the pins of an `EvalData` into embeddings in one shared space:
`pin` (what a pin is retrieved by), `image` (a pin from its image alone) and `text` (a pin
from its text alone), and embeds free text (board titles) into the same space. A model
that lacks a modality returns None for it; tasks that need it are then reported as n/a.
Every returned tensor is float32, L2-normalised, one row per pin.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pinclip.errors import InputError
from pinclip.evaluate.data import EvalData


@dataclass
class PinEmbeddings:
    pin: torch.Tensor  # [N, D] candidates and fused queries
    image: torch.Tensor | None  # [N, D] image-only path
    text: torch.Tensor | None  # [N, D] text-only path


class Embedder(ABC):
    """A model or baseline under evaluation. Subclass, set `name`, implement `embed_pins`."""

    name: str = "embedder"
    #: tasks this model is at the floor on by construction, and why: reported n/a, not scored
    not_applicable: dict[str, str] = {}
    #: a reference floor (random vectors), never "the best baseline"
    is_floor: bool = False

    @abstractmethod
    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        """Embeddings of every pin of `data` (row i = pin i of `data.graph`)."""

    def embed_texts(self, texts: list[str]) -> torch.Tensor | None:
        """Free text (e.g. board titles) in the `pin` space; None when the model reads no text."""
        return None

    def trained_on(self) -> str | None:
        """A run dir whose metrics.jsonl holds this model's training losses (None: not trained)."""
        return None


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def check_embeddings(emb: PinEmbeddings, n_pins: int, name: str) -> PinEmbeddings:
    """Enforce the contract: right row count, one dimension, finite, unit norm."""
    dim = emb.pin.shape[1]
    for part in ("pin", "image", "text"):
        x = getattr(emb, part)
        if x is None:
            continue
        if x.ndim != 2 or x.shape != (n_pins, dim):
            raise ValueError(
                f"baseline {name!r}: {part} embeddings have shape {tuple(x.shape)}, expected ({n_pins}, {dim})"
            )
        if not torch.isfinite(x).all():
            raise ValueError(f"baseline {name!r}: {part} embeddings contain NaN or inf")
        norms = x.norm(dim=1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
            raise ValueError(f"baseline {name!r}: {part} embeddings are not L2-normalised")
    return emb


_REGISTRY: dict[str, Callable[..., Embedder]] = {}


def register_baseline(name: str) -> Callable[[Callable[..., Embedder]], Callable[..., Embedder]]:
    """Decorator: make a factory available to `pinclip compare` under `name`."""

    def wrap(factory: Callable[..., Embedder]) -> Callable[..., Embedder]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_baselines() -> list[str]:
    return sorted(_REGISTRY)


def create_baseline(name: str, **kwargs) -> Embedder:
    """A registered baseline by name (`list_baselines()`)."""
    if name not in _REGISTRY:
        raise InputError(f"unknown baseline {name!r}; known: {', '.join(list_baselines())}")
    return _REGISTRY[name](**kwargs)
