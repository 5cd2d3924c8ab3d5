"""Projection heads into one L2-normalised embedding space, Matryoshka-style.

The loss sums over prefixes of the embedding (e.g. the first 64, 128 and 256 dims), so a
prefix, renormalised, is a usable cheaper embedding on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingHead(nn.Module):
    """LayerNorm-free linear projection followed by L2 normalisation.

    With `native` (an aligned start on a foundation), the embedding is the foundation's own
    projection of its pooled output plus this projection of the tower's state: `native`
    starts as the backbone's projection and `proj` at zero, so the head starts as the
    foundation's zero-shot embedding and training moves it only as far as the loss asks.
    """

    def __init__(self, width: int, embed_dim: int, native: nn.Linear | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(width, embed_dim, bias=False)
        self.native = native

    def forward(self, x: torch.Tensor, native: torch.Tensor | None = None) -> torch.Tensor:
        y = self.proj(x)
        if self.native is not None and native is not None:
            y = y + self.native(native)
        return F.normalize(y, dim=-1)


def matryoshka_slice(emb: torch.Tensor, dim: int) -> torch.Tensor:
    """The first `dim` dimensions of an embedding, renormalised to unit length."""
    if not 0 < dim <= emb.shape[-1]:
        raise ValueError(f"matryoshka dim {dim} outside 1..{emb.shape[-1]}")
    return F.normalize(emb[..., :dim], dim=-1)
