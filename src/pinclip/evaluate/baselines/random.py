"""The floor: random unit vectors, independent per pin and per modality (seeded)."""

from __future__ import annotations

import torch

from pinclip.evaluate.data import EvalData

from .base import Embedder, PinEmbeddings, normalize, register_baseline


@register_baseline("random", help="random unit vectors per pin and modality, seeded: the floor")
class RandomEmbedder(Embedder):
    name = "random"
    is_floor = True

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        self.dim, self.seed = dim, seed

    def _draw(self, n: int, stream: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1000 + stream)
        return normalize(torch.randn(n, self.dim, generator=g))

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        n = data.n_pins
        return PinEmbeddings(self._draw(n, 0), self._draw(n, 1), self._draw(n, 2))

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return self._draw(len(texts), 3)
