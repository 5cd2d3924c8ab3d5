"""Typed model configuration: what a preset file or a saved `config.json` holds.

The config is plain data (dataclasses of ints, floats, strings and tuples) so it can be
written to JSON, merged with `key=value` overrides (type-checked by `pinclip._typed_config`,
the same path as the training config), and used to rebuild the exact model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pinclip._typed_config import build, check_choices
from pinclip.errors import ConfigError

#: The pip-installed pretrained sources (offline); see `pinclip.model.pretrained`.
LITE0_PIP = "efficientnet-lite0-pip"
MINILM_PIP = "minilm-pip"
SCRATCH = "scratch"
#: The backbone family of vision-language models (`pinclip.model.vlm`).
VLM_PREFIX = "hf-vlm:"


def is_vlm_spec(spec: str) -> bool:
    """True when a `backbone` spec names a vision-language model (`hf-vlm:REPO_OR_DIR`)."""
    return spec.startswith(VLM_PREFIX)


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
    #: 0 keeps the stride-16 map's native grid (image_size/16); g > 0 average-pools it to
    #: g x g first: fewer fine tokens, and a frozen-feature store that holds 4x less for it.
    fine_grid: int = 0
    #: With freeze_stem, train the stem's last N blocks (timm EfficientNet/MobileNet stems):
    #: the store then holds the states below them, and they train at `optim.tuned_lr`.
    tune_last_blocks: int = 0
    #: ViT backbones (`backbone: timm:vit_*`, `open_clip:`, `hf:`, `pinclip:`): the blocks
    #: whose output tokens become the tower's levels (the ViT counterpart of the stride-16/32
    #: maps); () takes three evenly spaced blocks, the last one included.
    levels: tuple[int, ...] = ()


@dataclass
class TextConfig:
    """Text tower: a pretrained HF encoder (or a small scratch one) plus adapter layers."""

    #: "minilm-pip" (offline all-MiniLM-L6-v2), "scratch", a local HF model dir or a hub name.
    encoder: str = MINILM_PIP
    max_length: int = 64
    #: Encoder states kept per text: 0 keeps every token; K > 0 keeps the masked-mean state
    #: followed by the first K-1 token states (what a frozen-feature store then holds per pin).
    keep_tokens: int = 0
    #: With freeze_text_encoder, train the encoder's last N transformer layers (HF encoders):
    #: the store then holds every token's state below them (keep_tokens applies above), and
    #: they train at `optim.tuned_lr`.
    tune_last_layers: int = 0
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
class VLMConfig:
    """How a vision-language model backbone (`backbone: hf-vlm:REPO_OR_DIR`) is read and tuned.

    One decoder VLM reads the image alone, the text alone and both together; its pooled
    hidden states feed the image, text and pin heads (the joint state is the mid fusion).
    The resolution is `image.image_size` and the text budget `text.max_length`; the image,
    text and fusion sections' layers are not built (`pinclip.model.vlm`).
    """

    #: "last" (the last real token's state) or "mean" (attention-masked mean over the prompt).
    pooling: Literal["last", "mean"] = "last"
    #: Which hidden state: -1 the last layer, k >= 0 the output of decoder layer k (0: embeddings).
    layer: int = -1
    #: The user message of each pass, rendered with the model's own chat template; "{text}"
    #: marks where the pin's text goes; the image passes put the image before the message.
    image_prompt: str = "Describe this image in one word:"
    text_prompt: str = "{text}\nDescribe this text in one word:"
    joint_prompt: str = "{text}\nDescribe this image and its text in one word:"
    #: Append the template's assistant header (the pooled last token then starts the answer).
    generation_prompt: bool = True
    #: A Jinja chat template replacing the processor's own (None: the model's template).
    chat_template: str | None = None
    #: Extra keyword arguments of the image processor (e.g. do_image_splitting: false).
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    #: LoRA adapters (peft) on the modules named in lora_targets; rank 0: the VLM stays frozen.
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    #: Recompute decoder activations in the backward pass (memory for ~30% more compute).
    gradient_checkpointing: bool = False
    #: dtype the base weights are held in: fp32, bf16 (half the memory; LoRA weights stay fp32).
    base_dtype: Literal["fp32", "bf16"] = "fp32"


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
    #: A foundation model to stand on, `FAMILY:ARG` (`pinclip.model.backbones`): `timm:NAME`
    #: (image tower), `open_clip:ARCH[@PRETRAINED]`, `hf:REPO_OR_DIR`, `pinclip:RUN_DIR`
    #: (both towers). "" keeps `image.stem` / `text.encoder`. With a backbone the image
    #: preprocessing (size, mean, std) and the text length are the backbone's.
    backbone: str = ""
    #: When both towers come from one image-text backbone: the heads start from its
    #: projections and temperature and the learned residuals at zero, so the untrained model
    #: embeds exactly as the foundation does (embed_dim must be the backbone's).
    aligned_start: bool = True
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    vlm: VLMConfig = field(default_factory=VLMConfig)

    def __post_init__(self) -> None:
        self.matryoshka_dims = tuple(int(d) for d in self.matryoshka_dims)
        self.image.levels = tuple(int(i) for i in self.image.levels)
        self.image.mean = tuple(float(x) for x in self.image.mean)
        self.image.std = tuple(float(x) for x in self.image.std)
        self.vlm.lora_targets = tuple(str(t) for t in self.vlm.lora_targets)
        check_choices(self.vlm, "vlm")
        self.validate()

    def validate(self) -> None:
        """Fail early, naming the field, instead of deep inside a forward pass."""
        for where, heads in (("image", self.image.heads), ("text", self.text.heads)):
            if self.width % heads:
                raise ConfigError(f"width={self.width} is not divisible by {where}.heads={heads}")
        if self.width % self.fusion.heads:
            raise ConfigError(
                f"width={self.width} is not divisible by fusion.heads={self.fusion.heads}"
            )
        if self.text.scratch_width % self.text.scratch_heads:
            raise ConfigError("text.scratch_width must be divisible by text.scratch_heads")
        dims = self.matryoshka_dims
        if not dims or list(dims) != sorted(set(dims)) or dims[-1] != self.embed_dim:
            raise ConfigError(
                f"matryoshka_dims={dims} must be increasing and end with embed_dim={self.embed_dim}"
            )
        if self.text.keep_tokens < 0:
            raise ValueError(f"text.keep_tokens={self.text.keep_tokens} must be >= 0 (0 keeps all)")
        if not 0 <= self.image.fine_grid <= self.image.image_size // 16:
            raise ValueError(
                f"image.fine_grid={self.image.fine_grid} must be between 0 (native) and "
                f"image_size/16={self.image.image_size // 16}"
            )
        for key, n, frozen, flag in (
            (
                "text.tune_last_layers",
                self.text.tune_last_layers,
                self.freeze_text_encoder,
                "freeze_text_encoder",
            ),
            (
                "image.tune_last_blocks",
                self.image.tune_last_blocks,
                self.freeze_stem,
                "freeze_stem",
            ),
        ):
            if n < 0:
                raise ConfigError(f"{key}={n} must be >= 0 (0 trains none of the pretrained part)")
            if n and not frozen:
                raise ConfigError(
                    f"{key}={n} tunes the top of a frozen pretrained part: set {flag}=true "
                    f"(with {flag}=false the whole part trains already)"
                )
        if self.backbone and ":" not in self.backbone:
            raise ConfigError(
                f"backbone={self.backbone!r}: write FAMILY:ARG (timm:, open_clip:, hf:, pinclip:, hf-vlm:)"
            )
        if self.image.image_size % 32 and not self.backbone:  # a ViT backbone sets its own
            raise ConfigError(f"image.image_size={self.image.image_size} must be a multiple of 32")
        self._validate_vlm()

    def _validate_vlm(self) -> None:
        v = self.vlm
        if not is_vlm_spec(self.backbone):
            return
        if not self.backbone.removeprefix(VLM_PREFIX):
            raise ConfigError(
                f"backbone={self.backbone!r}: write hf-vlm:REPO_OR_DIR (a Hub id or a local folder)"
            )
        if v.lora_rank < 0 or not 0 <= v.lora_dropout < 1:
            raise ConfigError("vlm.lora_rank must be >= 0 and vlm.lora_dropout in [0, 1)")
        if v.lora_rank and not v.lora_targets:
            raise ConfigError("vlm.lora_targets is empty: name the modules LoRA adapts")
        for key in ("text_prompt", "joint_prompt"):
            if "{text}" not in getattr(v, key):
                raise ConfigError(f"vlm.{key} must contain '{{text}}' where the pin's text goes")
        if "{text}" in v.image_prompt:
            raise ConfigError("vlm.image_prompt reads the image alone: remove '{text}' from it")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "a model config") -> PinCLIPConfig:
        """Build from nested dicts, type-checked; an unknown key is a ConfigError naming the
        nearest valid one."""
        return build(cls, [(data, source)])
