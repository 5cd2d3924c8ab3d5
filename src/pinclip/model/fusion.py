"""Mid fusion: a small transformer over [FUSE] + image tokens (both levels) + text tokens.

Each token gets a type embedding (fine image / coarse image / text) so the fusion layers
know modality and granularity. With one modality only, the other is simply absent from
the sequence, so an image-only upload (or a text-only query) still gets a pin embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PinCLIPConfig
from .layers import run_transformer, transformer

FINE, COARSE = 0, 1  # a CNN stem's levels; text is the type after the last image level


class Fusion(nn.Module):
    def __init__(self, cfg: PinCLIPConfig, image_levels: int = 2) -> None:
        super().__init__()
        w = cfg.width
        self.fuse_token = nn.Parameter(torch.randn(1, 1, w) * 0.02)
        # one type per image level (CNN: fine, coarse; ViT: one per tapped block), then text
        self.text_type = image_levels
        self.type_embed = nn.Embedding(image_levels + 1, w)
        self.blocks = transformer(w, cfg.fusion.depth, cfg.fusion.heads, cfg.mlp_ratio, cfg.dropout)
        self.norm = nn.LayerNorm(w)

    def forward(
        self,
        image_patches: torch.Tensor | None = None,
        image_levels: torch.Tensor | None = None,
        text_states: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The [FUSE] state [B, W] after attending over whatever modalities are given."""
        parts, masks = [], []
        if image_patches is not None:
            assert image_levels is not None
            parts.append(image_patches + self.type_embed(image_levels))
            masks.append(
                torch.ones(image_patches.shape[:2], dtype=torch.bool, device=image_patches.device)
            )
        if text_states is not None:
            assert text_mask is not None
            parts.append(text_states + self.type_embed.weight[self.text_type])
            masks.append(text_mask.bool())
        if not parts:
            raise ValueError("fusion needs image tokens, text tokens or both")
        batch = parts[0].shape[0]
        fuse = self.fuse_token.expand(batch, -1, -1)
        x = torch.cat([fuse, *parts], dim=1)
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=x.device), *masks], dim=1)
        return self.norm(run_transformer(self.blocks, x, pad_mask=~keep)[:, 0])
