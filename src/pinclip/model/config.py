"""Typed model configuration: what a preset file or a saved `config.json` holds.

The config is plain data (dataclasses of ints, floats, strings and tuples) so it can be
written to JSON, merged with `key=value` overrides, and used to rebuild the exact model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

#: The pip-installed pretrained sources (offline); see `pinclip.model.pretrained`.
LITE0_PIP = "efficientnet-lite0-pip"
MINILM_PIP = "minilm-pip"
SCRATCH = "scratch"


@dataclass
class ImageConfig:
    """Hybrid-ViT image tower: a timm CNN stem whose stride-16/32 maps become tokens."""

    stem: str = "tf_efficientnet_lite0"
    #: None (random init), "efficientnet-lite0-pip" (offline), "timm" (online hub) or a weights file.
    pretrained: str | None = LITE0_PIP
    image_size: int = 224
    depth: int = 2
    heads: int = 4
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    #: Fraction of the resized image kept by the eval center crop (1.0 keeps it whole).
    crop_pct: float = 1.0
    #: CLS starts from the stem's global-average-pooled maps (projected) instead of a learned
    #: constant, so the pooled image embedding keeps the pretrained CNN's global summary.
    global_token: bool = True


@dataclass
class TextConfig:
    """Text tower: a pretrained HF encoder (or a small scratch one) plus adapter layers."""

    #: "minilm-pip" (offline all-MiniLM-L6-v2), "scratch", a local HF model dir or a hub name.
    encoder: str = MINILM_PIP
    max_length: int = 64
    #: Transformer layers of model width on top of the encoder (0 = projection only).
    depth: int = 2
    heads: int = 4
    #: Size of the from-scratch encoder (used when encoder == "scratch").
    scratch_width: int = 128
    scratch_depth: int = 2
    scratch_heads: int = 4


@dataclass
class FusionConfig:
    """Mid-fusion transformer over [FUSE] + image tokens (both levels) + text tokens."""

    depth: int = 2
    heads: int = 4
    #: Hybrid fusion: pin = normalise(image_emb + text_emb + mid-fusion [FUSE] projection),
    #: i.e. late fusion plus a learned mid-fusion residual. False: the [FUSE] state alone.
    late: bool = True


@dataclass
class PinCLIPConfig:
    """Everything needed to rebuild a PinCLIP model (weights aside)."""

    name: str = "custom"
    width: int = 256
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    embed_dim: int = 256
    matryoshka_dims: tuple[int, ...] = (64, 128, 256)
    freeze_stem: bool = False
    freeze_text_encoder: bool = False
    logit_scale_init: float = math.log(1 / 0.07)
    logit_bias_init: float = -10.0
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        self.matryoshka_dims = tuple(int(d) for d in self.matryoshka_dims)
        self.image.mean = tuple(float(x) for x in self.image.mean)
        self.image.std = tuple(float(x) for x in self.image.std)
        self.validate()

    def validate(self) -> None:
        """Fail early, naming the field, instead of deep inside a forward pass."""
        for where, heads in (("image", self.image.heads), ("text", self.text.heads)):
            if self.width % heads:
                raise ValueError(f"width={self.width} is not divisible by {where}.heads={heads}")
        if self.width % self.fusion.heads:
            raise ValueError(
                f"width={self.width} is not divisible by fusion.heads={self.fusion.heads}"
            )
        if self.text.scratch_width % self.text.scratch_heads:
            raise ValueError("text.scratch_width must be divisible by text.scratch_heads")
        dims = self.matryoshka_dims
        if not dims or list(dims) != sorted(set(dims)) or dims[-1] != self.embed_dim:
            raise ValueError(
                f"matryoshka_dims={dims} must be increasing and end with embed_dim={self.embed_dim}"
            )
        if self.image.image_size % 32:
            raise ValueError(f"image.image_size={self.image.image_size} must be a multiple of 32")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PinCLIPConfig:
        """Build from nested dicts; unknown keys are an error that lists the valid ones."""
        data = dict(data)
        subs = {"image": ImageConfig, "text": TextConfig, "fusion": FusionConfig}
        for key, sub_cls in subs.items():
            if key in data:
                data[key] = _make(sub_cls, data[key], prefix=f"{key}.")
        return _make(cls, data, prefix="")


def _make(cls: type, data: Any, prefix: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"config section {prefix.rstrip('.') or 'root'} must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(
            f"unknown model config key(s) {[prefix + k for k in unknown]}; "
            f"valid keys: {sorted(prefix + n for n in names)}"
        )
    return cls(**data)


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply overrides to a nested config dict.

    Keys may be dotted (``{"image.depth": 4}``) or nested dicts (``image={"depth": 4}``).
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise KeyError(f"override {key!r}: {part!r} is not a config section")
        leaf = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = merge_overrides(node[leaf], value)
        else:
            node[leaf] = value
    return out
