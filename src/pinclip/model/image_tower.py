"""Hybrid-ViT image tower: CNN stem maps at stride 16 and 32 become tokens for a transformer.

Fine tokens (stride 16: patches) and coarse tokens (stride 32: regions) each get a 1x1
projection to the model width, a learned level embedding and a 2-D position embedding
(interpolated when the input size differs from the configured one), then a CLS token and
N transformer layers. The CLS state is the pooled image representation. With
`image.global_token` the CLS token starts from a projection of the stem maps' global average
pools: a freshly initialised transformer then refines the pretrained CNN's global summary
instead of having to rebuild it from patch tokens (on the emoji catalog that summary alone,
linearly probed, beats what one fresh layer learns from patches in the demo's budget).

With `image.tune_last_blocks: N` the frozen stem is cut below its last N blocks: a feature
cache holds the maps emitted below the cut plus the state entering the first tuned block,
and those N blocks train with the rest (`StemCut`).
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
    #: the backbone's own pooled output [B, H] (ViT backbones): what its projection embeds
    native: torch.Tensor | None = None

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


class StemCut:
    """A timm EfficientNet/MobileNet stem (conv_stem, bn1, stages of blocks) cut below its
    last `n` blocks. `lower` returns what a cache stores: the needed maps emitted below the
    cut, then the state entering the first tuned block; `upper` runs the tuned blocks and
    returns the needed maps (stride 16, stride 32), exactly as the stem's own forward would.
    """

    def __init__(self, stem: nn.Module, indices: tuple[int, ...], n: int) -> None:
        blocks = getattr(stem, "blocks", None)
        if (
            not isinstance(blocks, nn.Sequential)
            or not hasattr(stem, "conv_stem")
            or getattr(stem, "feature_hooks", None) is not None
        ):
            raise ConfigError(
                f"image.tune_last_blocks needs a timm EfficientNet/MobileNet-style stem "
                f"(conv_stem + blocks); {type(stem).__name__} is not one: set it to 0"
            )
        self.stem = stem
        self.blocks = [b for stage in blocks for b in stage]  # flat, in forward order
        if not 0 < n <= len(self.blocks):
            raise ConfigError(
                f"image.tune_last_blocks={n} but the stem has {len(self.blocks)} blocks"
            )
        # flat index of the block whose output is feature f (-1: the conv_stem's output)
        ends, flat = [-1] if 0 in stem._stage_out_idx else [], 0
        for i, stage in enumerate(blocks):
            flat += len(stage)
            if i + 1 in stem._stage_out_idx:
                ends.append(flat - 1)
        self.ends = [ends[i] for i in indices]
        self.cut = len(self.blocks) - n
        self.stored_maps = sum(e < self.cut for e in self.ends)

    def frozen_part(self) -> nn.Module:
        return nn.ModuleList([self.stem.conv_stem, self.stem.bn1, *self.blocks[: self.cut]])

    def tuned_part(self) -> nn.ModuleList:
        return nn.ModuleList(self.blocks[self.cut :])

    def lower(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem.bn1(self.stem.conv_stem(images))
        maps = [x] if self.ends[0] == -1 else []
        for j in range(self.cut):
            x = self.blocks[j](x)
            maps += [x] * self.ends.count(j)
        return [*maps[: self.stored_maps], x]

    def upper(self, stored: list[torch.Tensor]) -> list[torch.Tensor]:
        *maps, x = stored
        for j in range(self.cut, len(self.blocks)):
            x = self.blocks[j](x)
            maps += [x] * self.ends.count(j)
        return maps


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
        self.cut = (
            StemCut(self.stem, self.stem_indices, ic.tune_last_blocks)
            if ic.tune_last_blocks
            else None
        )

    def frozen_part(self) -> nn.Module:
        """The stem below the tuned blocks (all of it when none is tuned)."""
        return self.cut.frozen_part() if self.cut else self.stem

    def tuned_part(self) -> nn.ModuleList:
        """The stem's tuned last blocks (empty when none is tuned)."""
        return self.cut.tuned_part() if self.cut else nn.ModuleList()

    def stem_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What a feature cache stores: the stem maps (stride 16, stride 32), or with tuned
        last blocks the maps emitted below them and the state entering them."""
        # NHWC input: the convolutions run in that layout, ~1.7x faster on the CPU (depthwise)
        images = images.contiguous(memory_format=torch.channels_last)
        if self.cut:
            stored = self.cut.lower(images)
            return self._pool_fine(stored) if self.cut.stored_maps else stored
        maps = self.stem(images)
        return self._pool_fine([maps[i] for i in self.stem_indices])

    def _pool_fine(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """`image.fine_grid` pooling of the stride-16 map (maps[0]); pooling a map that is
        already that size is the identity, so a stored pooled map may pass twice."""
        if not self.fine_grid:
            return maps
        fine, *rest = maps
        return [F.adaptive_avg_pool2d(fine, self.fine_grid), *rest]

    def forward(
        self, images: torch.Tensor | None = None, features: list[torch.Tensor] | None = None
    ) -> ImageTokens:
        if features is None:
            if images is None:
                raise ValueError("ImageTower needs images or precomputed stem features")
            features = self.stem_features(images)
        if self.cut:
            features = self._pool_fine(self.cut.upper(features))
        x, levels = self.input_tokens(features)
        x = self.norm(run_transformer(self.blocks, x))
        return ImageTokens(states=x, levels=levels)

    @property
    def n_levels(self) -> int:
        return len(STRIDES)

    def input_tokens(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """[CLS, level tokens] entering the transformer layers [B, 1+N, W], and each level."""
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
        return torch.cat([cls, x], dim=1), torch.cat(levels)


def vit_levels(levels: tuple[int, ...], n_blocks: int) -> tuple[int, ...]:
    """The block indices tapped for tokens: `levels`, or three evenly spaced ending at the last."""
    if not levels:
        k = min(3, n_blocks)
        return tuple(sorted({round(n_blocks * (j + 1) / k) - 1 for j in range(k)}))
    bad = [i for i in levels if not 0 <= i < n_blocks]
    if bad or list(levels) != sorted(set(levels)):
        raise ConfigError(
            f"image.levels={list(levels)} must be increasing block indices in 0..{n_blocks - 1}"
        )
    return tuple(levels)


class ViTImageTower(nn.Module):
    """Hybrid-ViT image tower on a ViT backbone (`pinclip.model.backbones.TokenEncoder`).

    The tokens of several backbone blocks (`image.levels`, default three evenly spaced)
    each get a linear projection to the model width and a level embedding: the counterpart
    of the CNN's stride-16/32 maps. The CLS token starts from a projection of the backbone's
    pooled output (its global token), then the tower's transformer layers run as on a CNN.
    `native` carries that pooled output to an aligned head. With `image.tune_last_blocks: N`
    the backbone is cut below its last N blocks: a store holds the tapped tokens below the
    cut and the state entering it; the last N blocks and the final norm/pooling train.
    """

    def __init__(self, cfg: PinCLIPConfig, encoder: nn.Module) -> None:
        super().__init__()
        ic, w = cfg.image, cfg.width
        self.stem = encoder
        n = len(encoder.layers)
        self.taps = vit_levels(ic.levels, n)
        if ic.tune_last_blocks > n:
            raise ConfigError(
                f"image.tune_last_blocks={ic.tune_last_blocks} but the backbone has {n} blocks"
            )
        if ic.fine_grid:
            raise ConfigError("image.fine_grid pools CNN maps; set it to 0 for a ViT backbone")
        self.cut = n - ic.tune_last_blocks
        h = encoder.hidden_size
        self.proj = nn.ModuleList(nn.Linear(h, w) for _ in self.taps)
        self.level_embed = nn.Parameter(torch.randn(len(self.taps), w) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(1, 1, w) * 0.02)
        self.global_proj = nn.Linear(h, w) if ic.global_token else None
        self.blocks = transformer(w, ic.depth, ic.heads, cfg.mlp_ratio, cfg.dropout)
        self.norm = nn.LayerNorm(w)

    @property
    def n_levels(self) -> int:
        return len(self.taps)

    def frozen_part(self) -> nn.Module:
        """The backbone below the tuned blocks (all of it when none is tuned)."""
        if self.cut == len(self.stem.layers):
            return self.stem
        return nn.ModuleList([*self.stem.embed_modules(), *self.stem.layers[: self.cut]])

    def tuned_part(self) -> nn.ModuleList:
        """The backbone's tuned last blocks and its final norm/pooling (empty when none)."""
        if self.cut == len(self.stem.layers):
            return nn.ModuleList()
        return nn.ModuleList([*self.stem.layers[self.cut :], *self.stem.finish_modules()])

    def stem_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What a feature cache stores: the tapped tokens [B, L, H] and the pooled output
        [B, H]; with tuned last blocks, the taps below them and the state entering them."""
        x, _ = self.stem.embed(images)
        out = []
        for i in range(self.cut):
            x = self.stem.run_layer(i, x, None)
            if i in self.taps:
                out.append(x)
        if self.cut < len(self.stem.layers):
            return [*out, x]
        return [*out, self.stem.finish(x, None)[1]]

    def _upper(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        *out, x = features
        for i in range(self.cut, len(self.stem.layers)):
            x = self.stem.run_layer(i, x, None)
            if i in self.taps:
                out.append(x)
        return [*out, self.stem.finish(x, None)[1]]

    def forward(
        self, images: torch.Tensor | None = None, features: list[torch.Tensor] | None = None
    ) -> ImageTokens:
        if features is None:
            if images is None:
                raise ValueError("ImageTower needs images or precomputed backbone features")
            features = self.stem_features(images)
        if self.cut < len(self.stem.layers):
            features = self._upper(features)
        *taps, pooled = features
        if len(taps) != len(self.taps):
            raise ValueError(f"expected {len(self.taps)} token levels, got {len(taps)}")
        tokens, levels = [], []
        for level, (t, proj) in enumerate(zip(taps, self.proj, strict=True)):
            tokens.append(proj(t) + self.level_embed[level])
            levels.append(torch.full((t.shape[1],), level, dtype=torch.long, device=t.device))
        x = torch.cat(tokens, dim=1)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        if self.global_proj is not None:
            cls = cls + self.global_proj(pooled).unsqueeze(1)
        x = self.norm(run_transformer(self.blocks, torch.cat([cls, x], dim=1)))
        return ImageTokens(states=x, levels=torch.cat(levels), native=pooled)
