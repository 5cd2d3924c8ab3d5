"""Hybrid-ViT image tower: CNN stem maps at stride 16 and 32 become tokens for a transformer.

Fine tokens (stride 16: patches) and coarse tokens (stride 32: regions) each get a 1x1
projection to the model width, a learned level embedding and a 2-D position embedding
(interpolated when the input size differs from the configured one), then a CLS token and
N transformer layers. The CLS state is the pooled image representation. With
`image.global_token` the CLS token starts from a projection of the stem maps' global average
pools: a freshly initialised transformer then refines the pretrained CNN's global summary
instead of having to rebuild it from patch tokens (on the emoji catalog that summary alone,
linearly probed, beats what one fresh layer learns from patches in the demo's budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn

from pinclip.errors import ConfigError

from .config import PinCLIPConfig
from .layers import run_transformer, transformer

STRIDES = (16, 32)


@dataclass
class ImageTokens:
    """Image tower output: states [B, 1+N, W] (CLS first) and the level of each patch token."""

    states: torch.Tensor
    levels: torch.Tensor  # [N] long: 0 = fine (stride 16), 1 = coarse (stride 32)

    @property
    def pooled(self) -> torch.Tensor:
        return self.states[:, 0]

    @property
    def patches(self) -> torch.Tensor:
        return self.states[:, 1:]


def create_stem(name: str, *, pretrained_online: bool = False) -> tuple[nn.Module, tuple[int, ...]]:
    """A timm backbone (features_only) and the indices of its stride-16 and stride-32 maps."""
    stem = timm.create_model(name, pretrained=pretrained_online, features_only=True)
    reductions = stem.feature_info.reduction()
    missing = [s for s in STRIDES if s not in reductions]
    if missing:
        raise ConfigError(
            f"timm model {name!r} has no feature map at stride(s) {missing} "
            f"(its strides: {reductions}); choose a CNN backbone with stride 16 and 32 stages"
        )
    # The last stage at each stride is the most processed one.
    indices = tuple(max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES)
    return stem, indices


class ImageTower(nn.Module):
    def __init__(self, cfg: PinCLIPConfig, *, pretrained_online: bool = False) -> None:
        super().__init__()
        ic, w = cfg.image, cfg.width
        self.stem, self.stem_indices = create_stem(ic.stem, pretrained_online=pretrained_online)
        channels = [self.stem.feature_info.channels()[i] for i in self.stem_indices]
        self.proj = nn.ModuleList(nn.Conv2d(c, w, kernel_size=1) for c in channels)
        self.grids = tuple(ic.image_size // s for s in STRIDES)
        self.fine_grid = ic.fine_grid
        if ic.fine_grid:
            self.grids = (ic.fine_grid, *self.grids[1:])
        self.pos_embed = nn.ParameterList(
            nn.Parameter(torch.randn(1, w, g, g) * 0.02) for g in self.grids
        )
        self.level_embed = nn.Parameter(torch.randn(len(STRIDES), w) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(1, 1, w) * 0.02)
        self.global_proj = nn.Linear(sum(channels), w) if ic.global_token else None
        self.blocks = transformer(w, ic.depth, ic.heads, cfg.mlp_ratio, cfg.dropout)
        self.norm = nn.LayerNorm(w)

    def stem_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The CNN stem maps (stride 16, stride 32): what a feature cache stores."""
        maps = self.stem(images)
        fine, *rest = [maps[i] for i in self.stem_indices]
        if self.fine_grid:
            fine = F.adaptive_avg_pool2d(fine, self.fine_grid)
        return [fine, *rest]

    def forward(
        self, images: torch.Tensor | None = None, features: list[torch.Tensor] | None = None
    ) -> ImageTokens:
        if features is None:
            if images is None:
                raise ValueError("ImageTower needs images or precomputed stem features")
            features = self.stem_features(images)
        if len(features) != len(STRIDES):
            raise ValueError(f"expected {len(STRIDES)} stem feature maps, got {len(features)}")
        tokens, levels = [], []
        for level, (fmap, proj, pos) in enumerate(
            zip(features, self.proj, self.pos_embed, strict=True)
        ):
            x = proj(fmap)  # [B, W, h, w]
            if x.shape[-2:] != pos.shape[-2:]:
                pos = F.interpolate(pos, size=x.shape[-2:], mode="bicubic", align_corners=False)
            x = (x + pos).flatten(2).transpose(1, 2) + self.level_embed[level]
            tokens.append(x)
            levels.append(torch.full((x.shape[1],), level, dtype=torch.long, device=x.device))
        x = torch.cat(tokens, dim=1)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        if self.global_proj is not None:
            pooled = torch.cat([f.mean(dim=(2, 3)) for f in features], dim=1)
            cls = cls + self.global_proj(pooled).unsqueeze(1)
        x = torch.cat([cls, x], dim=1)
        x = self.norm(run_transformer(self.blocks, x))
        return ImageTokens(states=x, levels=torch.cat(levels))
