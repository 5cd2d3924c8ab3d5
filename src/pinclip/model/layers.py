"""Small shared building blocks."""

from __future__ import annotations

import torch
from torch import nn


def transformer(width: int, depth: int, heads: int, mlp_ratio: float, dropout: float) -> nn.Module:
    """A pre-norm transformer encoder (batch first); identity when depth == 0."""
    if depth == 0:
        return nn.Identity()
    layer = nn.TransformerEncoderLayer(
        d_model=width,
        nhead=heads,
        dim_feedforward=int(width * mlp_ratio),
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # No nested-tensor fast path: padded positions stay defined and outputs do not depend on it.
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def run_transformer(
    blocks: nn.Module, x: torch.Tensor, pad_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Run `transformer(...)` output; `pad_mask` is True at padding positions."""
    if isinstance(blocks, nn.Identity):
        return x
    return blocks(x, src_key_padding_mask=pad_mask)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tokens where mask is 1 (sentence-transformers' mean pooling)."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
