"""PinCLIP: image tower + text tower + fusion + heads, with save/load and preprocessing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_file, save_model
from torch import nn

from pinclip.errors import ConfigError, PinclipError

from ._registry import preset_config
from .backbones import BACKBONE_DIR, Foundation, is_timm_cnn, linear_from, load_foundation
from .config import PinCLIPConfig, is_vlm_spec
from .fusion import Fusion
from .heads import EmbeddingHead
from .hub import pretrained_parts
from .image_tower import ImageTower, ViTImageTower
from .pretrained import load_stem_weights
from .text_tower import HFTextEncoder, TextTower, build_tokenizer, tokenize

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_ENCODER_DIR = "text_encoder"
FORMAT = "pinclip-model/1"


class ModelFileError(PinclipError, FileNotFoundError):
    """A model folder (or Hub repo) lacks what `save_pretrained` writes."""


class ModelFormatError(PinclipError, ValueError):
    """A config.json that `save_pretrained` did not write (or a newer format)."""


def image_transform(config: PinCLIPConfig, *, train: bool = False) -> Callable[[Any], torch.Tensor]:
    """The model's preprocessing from its config alone (serving uses it without the weights)."""
    from timm.data import create_transform

    ic = config.image
    if is_vlm_spec(
        config.backbone
    ):  # the VLM's own image processor normalises: pixels stay in [0, 1]
        return create_transform(
            input_size=(3, ic.image_size, ic.image_size),
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            crop_pct=1.0,
            interpolation="bicubic",
        )
    return create_transform(
        input_size=(3, ic.image_size, ic.image_size),
        is_training=train,
        mean=ic.mean,
        std=ic.std,
        crop_pct=ic.crop_pct,
        interpolation="bicubic",
        scale=(0.5, 1.0),
        hflip=0.5,
        color_jitter=0.2,
    )


@dataclass
class PinCLIPOutput:
    """Embeddings are L2-normalised [B, D]; a modality not given yields None."""

    image_emb: torch.Tensor | None
    text_emb: torch.Tensor | None
    pin_emb: torch.Tensor
    image_tokens: torch.Tensor | None  # [B, 1+N, W], CLS first
    text_tokens: torch.Tensor | None  # [B, L, W]
    text_mask: torch.Tensor | None  # [B, L], 1 = real token
    #: [M, D] board-tower embeddings of the board titles passed to the same forward
    board_emb: torch.Tensor | None = None

    def rows(self, index: slice) -> PinCLIPOutput:
        """The same output for a row slice of the batch (e.g. the anchors of a forward that
        embedded anchors and neighbors together); `board_emb` rows are not pins: kept whole."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        sliced = {k: None if t is None else t[index] for k, t in values.items()}
        return PinCLIPOutput(**{**sliced, "board_emb": self.board_emb})


class PinCLIP(nn.Module):
    """The PinCLIP model. Build with `from_preset`, `from_pretrained` or a `PinCLIPConfig`."""

    def __init__(
        self,
        config: PinCLIPConfig,
        *,
        load_pretrained: bool = True,
        seed: int = 0,
        text_source: str | Path | None = None,
        backbone_dir: Path | None = None,
        model_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        ic = config.image
        if is_vlm_spec(config.backbone):
            self._init_vlm(config, seed, model_dir)
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # same config + seed => same initial weights
            foundation = self._foundation(load_pretrained, backbone_dir)
            if foundation is not None and foundation.text is not None:
                self.tokenizer = foundation.tokenizer
            else:
                self.tokenizer = build_tokenizer(config, text_source)
            if foundation is not None and foundation.image is not None:
                self.image: ImageTower | ViTImageTower = ViTImageTower(config, foundation.image)
            else:
                self.image = ImageTower(
                    config, pretrained_online=load_pretrained and ic.pretrained == "timm"
                )
                if load_pretrained and ic.pretrained not in (None, "timm"):
                    load_stem_weights(self.image.stem, ic.stem, ic.pretrained)
            self.text = TextTower(
                config,
                self.tokenizer,
                load_weights=load_pretrained,
                source=text_source,
                foundation=foundation.text if foundation is not None else None,
            )
            self.fusion = Fusion(config, image_levels=self.image.n_levels)
            aligned = foundation is not None and foundation.aligned and config.aligned_start
            self.image_head = EmbeddingHead(
                config.width, config.embed_dim, _native_head(foundation, "image", config, aligned)
            )
            self.text_head = EmbeddingHead(
                config.width, config.embed_dim, _native_head(foundation, "text", config, aligned)
            )
            self.pin_head = EmbeddingHead(config.width, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias_init)))
        if aligned:
            self._aligned_start(foundation)
        self._save_backbone = foundation.save if foundation is not None else None
        self.image.stem.requires_grad_(not config.freeze_stem)
        self.text.encoder.requires_grad_(not config.freeze_text_encoder)
        self.tuned_part().requires_grad_(True)  # the tuned top of a frozen tower trains
        self.train()

    def _foundation(self, load_pretrained: bool, backbone_dir: Path | None) -> Foundation | None:
        """The backbone of `config.backbone` (None: the image.stem / text.encoder towers).

        A timm CNN takes the hybrid stride-16/32 path as `image.stem` always did; any other
        backbone sets the image preprocessing and text length in the config to its own."""
        cfg = self.config
        if not cfg.backbone:
            return None
        cnn = is_timm_cnn(cfg.backbone)
        if cnn is not None:
            weights = cfg.backbone.partition("@")[2]
            cfg.image.stem, cfg.image.pretrained = cnn, weights or "timm"
            return None
        foundation = load_foundation(cfg.backbone, weights=load_pretrained, saved=backbone_dir)
        if foundation.image is not None:
            cfg.image.image_size = foundation.image_size
            cfg.image.mean, cfg.image.std = foundation.mean, foundation.std
        if foundation.text is not None and foundation.max_length:
            cfg.text.max_length = min(cfg.text.max_length, foundation.max_length)
        return foundation

    def _aligned_start(self, foundation: Foundation) -> None:
        """Heads = the foundation's projections (+ zero residuals), its temperature, and a
        zero mid-fusion residual: at step 0 the model embeds as the foundation does."""
        if not self.config.fusion.late:
            raise ConfigError(
                "aligned_start needs fusion.late=true (pin = image + text + residual)"
            )
        with torch.no_grad():
            for head in (self.image_head, self.text_head, self.pin_head):
                head.proj.weight.zero_()
            if foundation.logit_scale is not None:
                self.logit_scale.fill_(foundation.logit_scale)
            if foundation.logit_bias is not None:
                self.logit_bias.fill_(foundation.logit_bias)

    def _init_vlm(self, config: PinCLIPConfig, seed: int, model_dir: str | Path | None) -> None:
        """A VLM backbone (`backbone: hf-vlm:...`) instead of the towers and the fusion layers: its
        pooled image, text and joint states go through a LayerNorm each into the heads."""
        from .vlm import PASSES, VLMEncoder

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # same config + seed => same adapters and heads
            self.vlm = VLMEncoder(
                config.backbone, config.vlm, config.image.image_size, model_dir=model_dir
            )
            self.tokenizer = self.vlm.tokenizer
            h = self.vlm.hidden_size
            self.vlm_norm = nn.ModuleDict({kind: nn.LayerNorm(h) for kind in PASSES})
            self.image_head = EmbeddingHead(h, config.embed_dim)
            self.text_head = EmbeddingHead(h, config.embed_dim)
            self.pin_head = EmbeddingHead(h, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias_init)))
        self._save_backbone = None  # the base comes from the spec (or save_merged's base/)
        self.register_state_dict_post_hook(_drop_vlm_base_weights)
        self.train()

    @property
    def is_vlm(self) -> bool:
        """A vision-language model backbone (`hf-vlm:`) in place of the towers and fusion."""
        return is_vlm_spec(self.config.backbone)

    # ----- what a checkpoint holds: a VLM's adapters and heads, never its base weights ------
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As nn.Module's; with a VLM, strict means exactly the keys `state_dict` writes (the
        base weights come from the `hf-vlm:` spec, not from the checkpoint)."""
        if not self.is_vlm:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        expected = set(self.state_dict())
        missing = sorted(expected - set(state_dict))
        unexpected = sorted(set(state_dict) - expected)
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"VLM checkpoint mismatch: missing {missing[:5]}, unexpected {unexpected[:5]} "
                "(was it saved with other vlm.lora_* settings?)"
            )
        return result._replace(missing_keys=missing, unexpected_keys=unexpected)

    def save_merged(self, directory: str | Path) -> Path:
        """For serving: fold the LoRA adapters into the base, write that base with its
        processor to `directory/base`, and a model folder whose spec is `hf-vlm:./base`
        (no adapters left; `from_pretrained` needs no peft and no access to the old base)."""
        if not self.is_vlm:
            raise ValueError("save_merged applies to a VLM backbone (hf-vlm:); use save_pretrained")
        directory = Path(directory)
        self.vlm.merge_adapters()
        self.vlm.save_base(directory / "base")
        self.config.backbone = "hf-vlm:./base"
        self.config.vlm.lora_rank = 0
        return self.save_pretrained(directory)

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def from_preset(
        cls, name: str, *, pretrained: bool = True, seed: int = 0, **overrides: Any
    ) -> PinCLIP:
        """Build a preset (`list_presets()`); overrides are dotted keys, e.g. `**{"image.depth": 4}`."""
        return cls(preset_config(name, **overrides), load_pretrained=pretrained, seed=seed)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
    ) -> PinCLIP:
        """Load what `save_pretrained` wrote, from a folder or a Hub repo id ("org/name").

        A repo is downloaded once into the Hub cache (`HF_HOME`); with `HF_HUB_OFFLINE=1`
        it is read from the cache only. Needs no pretrained-weights package.
        """
        from .hub import resolve

        directory = resolve(name_or_path, revision=revision, cache_dir=cache_dir, token=token)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise ModelFileError(
                    f"{directory / name} not found: pass a directory written by save_pretrained "
                    "or a Hub repo id (org/name)"
                )
        config = read_config(directory)
        text_dir = directory / TEXT_ENCODER_DIR
        model = cls(
            config,
            load_pretrained=False,
            text_source=text_dir if text_dir.is_dir() else None,
            backbone_dir=directory / BACKBONE_DIR,
            model_dir=directory,
        )
        load_model(model, str(directory / WEIGHTS_FILE), strict=True)
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        run_dir: str | Path | None = None,
        report: str | Path | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload PinCLIP model",
    ) -> str:
        """Upload to the Hub: the `save_pretrained` folder plus a model card (README.md)
        written from `run_dir` (data, objective) and `report` (the headline table)."""
        from .hub import push_to_hub

        return push_to_hub(
            self,
            repo_id,
            run_dir=run_dir,
            report=report,
            private=private,
            token=token,
            commit_message=commit_message,
        )

    def save_pretrained(
        self, directory: str | Path, *, state_dict: dict[str, torch.Tensor] | None = None
    ) -> Path:
        """Write config.json + model.safetensors (+ the text encoder's HF config and tokenizer).
        `state_dict`: the weights to write instead of the module's own (a sharded model's
        state gathered to one rank)."""
        directory = self.save_config(directory)
        if state_dict is None:
            save_model(self, str(directory / WEIGHTS_FILE))
        else:
            weights = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
            save_file(weights, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        return directory

    def save_config(self, directory: str | Path) -> Path:
        """Everything but the weights: config.json, the text encoder's HF config and
        tokenizer, and what rebuilds the backbone offline (`backbone/`, its spec recorded)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, **self.config.to_dict()}
        (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        if not self.is_vlm and isinstance(self.text.encoder, HFTextEncoder):
            self.text.encoder.model.config.save_pretrained(directory / TEXT_ENCODER_DIR)
            self.tokenizer.save_pretrained(directory / TEXT_ENCODER_DIR)
        if self._save_backbone is not None:
            (directory / BACKBONE_DIR).mkdir(exist_ok=True)
            self._save_backbone(directory / BACKBONE_DIR)
        return directory

    # ----- preprocessing ------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize texts for `forward(text=...)`: input_ids and attention_mask [B, L]."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("tokenize expects a list of strings")
        return tokenize(self.tokenizer, texts, self.config.text.max_length)

    def image_transform(self, train: bool = False) -> Callable[[Any], torch.Tensor]:
        """PIL RGB image -> normalised tensor [3, S, S]; `train` adds augmentation."""
        return image_transform(self.config, train=train)

    # ----- encode: PIL images and strings in, unit embeddings out (open_clip / ST style) ----
    def encode_image(self, images: Any, *, batch_size: int = 64) -> torch.Tensor:
        """Image embeddings [N, D] (L2-normalised) of PIL images or image paths."""
        return self._encode(images=_as_list(images, "images"), batch_size=batch_size).image_emb

    def encode_text(self, texts: str | Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """Text embeddings [N, D] (L2-normalised) of strings."""
        return self._encode(texts=_as_list(texts, "texts"), batch_size=batch_size).text_emb

    def encode_pin(
        self, images: Any, texts: str | Sequence[str], *, batch_size: int = 64
    ) -> torch.Tensor:
        """Pin embeddings [N, D] of (image, text) pairs: what related pins and boards use."""
        images, texts = _as_list(images, "images"), _as_list(texts, "texts")
        if len(images) != len(texts):
            raise ValueError(f"encode_pin got {len(images)} images but {len(texts)} texts")
        return self._encode(images=images, texts=texts, batch_size=batch_size).pin_emb

    @torch.no_grad()
    def _encode(
        self, *, images: list | None = None, texts: list | None = None, batch_size: int
    ) -> PinCLIPOutput:
        from PIL import Image

        transform = self.image_transform()
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        outs: dict[str, list[torch.Tensor]] = {"image_emb": [], "text_emb": [], "pin_emb": []}
        try:
            n = len(images if images is not None else texts)
            for start in range(0, n, batch_size):
                pixels = text = None
                if images is not None:
                    batch = [
                        Image.open(i) if isinstance(i, (str, Path)) else i
                        for i in images[start : start + batch_size]
                    ]
                    pixels = torch.stack([transform(i.convert("RGB")) for i in batch]).to(device)
                if texts is not None:
                    tok = self.tokenize(texts[start : start + batch_size])
                    text = {k: v.to(device) for k, v in tok.items()}
                out = self(images=pixels, text=text)
                for key, parts in outs.items():
                    value = getattr(out, key)
                    if value is not None:
                        parts.append(value.float().cpu())
        finally:
            self.train(was_training)
        cat = {k: torch.cat(v) if v else None for k, v in outs.items()}
        return PinCLIPOutput(**cat, image_tokens=None, text_tokens=None, text_mask=None)

    # ----- frozen parts (what a feature cache stores) -------------------------------------
    def stem_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The stem's stride-16/32 maps; without autograd when the stem is frozen."""
        self._no_store("stem_features")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_stem):
            return self.image.stem_features(images)

    def text_encoder_states(self, text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The text encoder's token states; without autograd when it is frozen."""
        self._no_store("text_encoder_states")
        frozen = self.config.freeze_text_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return self.text.encoder_states(text)

    def _no_store(self, what: str) -> None:
        if self.is_vlm:
            raise ValueError(f"{what}: a VLM backbone has no frozen-feature store inputs")

    def tuned_part(self) -> nn.ModuleList:
        """The tuned top blocks of the frozen towers (`image.tune_last_blocks`,
        `text.tune_last_layers`): trained at their own lr, see `param_groups`."""
        if self.is_vlm:
            return nn.ModuleList()
        return nn.ModuleList([*self.image.tuned_part(), *self.text.tuned_part()])

    def train(self, mode: bool = True) -> PinCLIP:
        """Frozen parts stay in eval mode (fixed BatchNorm statistics, no dropout), their
        tuned top blocks too: those train their weights on the pretrained statistics, and
        the stored states below them stay what the blocks were pretrained on."""
        super().train(mode)
        if self.is_vlm:
            return self
        if self.config.freeze_stem:
            self.image.stem.eval()
        if self.config.freeze_text_encoder:
            self.text.encoder.eval()
        return self

    # ----- forward ------------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor | None = None,
        text: dict[str, torch.Tensor] | None = None,
        *,
        image_features: list[torch.Tensor] | None = None,
        text_states: dict[str, torch.Tensor] | None = None,
        board_text: dict[str, torch.Tensor] | None = None,
        board_text_states: dict[str, torch.Tensor] | None = None,
    ) -> PinCLIPOutput:
        """Embed images and/or text; cached `image_features` / `text_states` skip the frozen parts.

        `board_text` / `board_text_states` (board titles, tokens or cached states) add the
        board-tower embeddings `board_emb` in the same forward (one graph for DDP)."""
        has_image = images is not None or image_features is not None
        has_text = text is not None or text_states is not None
        if not (has_image or has_text):
            raise ValueError("PinCLIP.forward needs images (or image_features), text, or both")
        if self.is_vlm:
            if image_features is not None or text_states is not None or board_text_states:
                raise ValueError("a VLM backbone reads images and text, not stored features")
            return self._vlm_forward(images, text, board_text)
        img = txt = None
        if has_image:
            if image_features is None:
                image_features = self.stem_features(images)
            img = self.image(features=image_features)
        if has_text:
            if text_states is None:
                text_states = self.text_encoder_states(text)
            txt = self.text(states=text_states)
        fused = self.fusion(
            image_patches=img.patches if img else None,
            image_levels=img.levels if img else None,
            text_states=txt.states if txt else None,
            text_mask=txt.mask if txt else None,
        )
        image_emb = self.image_head(img.pooled, img.native) if img else None
        text_emb = self.text_head(txt.pooled, txt.native) if txt else None
        board_emb = None
        if board_text is not None or board_text_states is not None:
            board_emb = self.board_embedding(board_text, text_states=board_text_states)
        return PinCLIPOutput(
            board_emb=board_emb,
            image_emb=image_emb,
            text_emb=text_emb,
            pin_emb=self.pin_embedding(fused, image_emb, text_emb),
            image_tokens=img.states if img else None,
            text_tokens=txt.states if txt else None,
            text_mask=txt.mask if txt else None,
        )

    def _vlm_forward(
        self,
        images: torch.Tensor | None,
        text: dict[str, torch.Tensor] | None,
        board_text: dict[str, torch.Tensor] | None,
    ) -> PinCLIPOutput:
        """Hybrid fusion over a VLM: image and text alone give image_emb and text_emb, the
        joint pass (both in one prompt) is the mid-fusion state; one modality alone is its
        own joint state."""
        states = self.vlm(images=images, text=text)
        normed = {kind: self.vlm_norm[kind](s) for kind, s in states.items()}
        image_emb = self.image_head(normed["image"]) if "image" in normed else None
        text_emb = self.text_head(normed["text"]) if "text" in normed else None
        fused = normed.get("joint", normed.get("image", normed.get("text")))
        board_emb = self.board_embedding(board_text) if board_text is not None else None
        return PinCLIPOutput(
            image_emb=image_emb,
            text_emb=text_emb,
            pin_emb=self.pin_embedding(fused, image_emb, text_emb),
            image_tokens=None,
            text_tokens=None,
            text_mask=None,
            board_emb=board_emb,
        )

    def board_embedding(
        self,
        text: dict[str, torch.Tensor] | None = None,
        *,
        text_states: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The board tower: a board title through the text tower and text head, [M, D] unit.

        It shares every weight with a pin's text embedding, so it needs no parameter per
        board (an unseen board is embedded from its title alone, at any catalog size) and
        `encode_text(title)` is the board embedding; the board term of the loss trains it."""
        if self.is_vlm:
            if text is None:
                raise ValueError("a VLM backbone embeds board titles from their tokens")
            return self.text_head(self.vlm_norm["text"](self.vlm.encode("text", None, text)))
        if text_states is None:
            if text is None:
                raise ValueError("board_embedding needs board title tokens or text states")
            text_states = self.text_encoder_states(text)
        txt = self.text(states=text_states)
        return self.text_head(txt.pooled, txt.native)

    def pin_embedding(
        self,
        fused: torch.Tensor,
        image_emb: torch.Tensor | None = None,
        text_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hybrid fusion: the late-fusion sum of the unit image and text embeddings plus the
        projected mid-fusion [FUSE] state, renormalised (`fusion.late`; else [FUSE] alone).

        The late part starts the pin embedding where frozen-feature baselines already are
        (their concatenation is a strong related-pins baseline); the mid-fusion residual
        learns what image and text say only together. A missing modality drops out of the sum.
        """
        if not self.config.fusion.late:
            return self.pin_head(fused)
        pin = self.pin_head.proj(fused)
        for emb in (image_emb, text_emb):
            if emb is not None:
                pin = pin + emb
        return F.normalize(pin, dim=-1)

    def param_groups(
        self, weight_decay: float, tuned_lr: float | None = None
    ) -> list[dict[str, Any]]:
        """AdamW parameter groups of the trainable parameters: weight decay on matrices
        (linear, attention, conv weights), none on biases, norms, embeddings of rank < 2 and
        the temperature/bias scalars (decaying those only pulls them towards 0). The tuned
        top blocks of the pretrained towers get two more groups at `tuned_lr` (pretrained
        weights want ~1e-5-1e-4, not the fresh layers' lr)."""
        tuned_ids = {id(p) for p in self.tuned_part().parameters()}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in tuned_ids]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        if tuned_ids:
            if tuned_lr is None:
                raise ValueError("the model tunes pretrained blocks: pass tuned_lr")
            tuned = list(self.tuned_part().parameters())
            groups += [
                {
                    "params": [p for p in tuned if p.ndim >= 2],
                    "weight_decay": weight_decay,
                    "lr": tuned_lr,
                },
                {"params": [p for p in tuned if p.ndim < 2], "weight_decay": 0.0, "lr": tuned_lr},
            ]
        return groups

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _drop_vlm_base_weights(module: nn.Module, state: dict, prefix: str, _: Any) -> None:
    """state_dict hook: a VLM's frozen base weights are not part of a pinclip model's state
    (they come from the `hf-vlm:` spec); adapters, norms, heads and scalars are."""
    from .vlm import is_base_key

    for key in [k for k in state if k.startswith(prefix) and is_base_key(k[len(prefix) :])]:
        del state[key]


def create_model(name: str, *, pretrained: bool = True, seed: int = 0, **overrides: Any) -> PinCLIP:
    """timm-style alias of `PinCLIP.from_preset`: a preset ready to *train*.

    `pretrained=True` loads only the towers' pretrained weights, offline from pip packages:
    in `small` and `base`, the image stem (EfficientNet-Lite0, ImageNet-1k) and the text
    encoder (all-MiniLM-L6-v2); `tiny` has none. The adapter layers, the fusion layers and
    the embedding heads always start random (a warning says so), so the pin embedding means
    nothing until trained: for a trained model use `PinCLIP.from_pretrained(dir or
    "org/name")`. `pinclip models` lists what each preset loads.
    """
    import warnings

    from .hub import describe_pretrained

    model = PinCLIP.from_preset(name, pretrained=pretrained, seed=seed, **overrides)
    if pretrained:
        warnings.warn(
            f"create_model({name!r}, pretrained=True): {describe_pretrained(model.config)}. "
            "Train it (pinclip train) or load a trained model with PinCLIP.from_pretrained.",
            UserWarning,
            stacklevel=2,
        )
    return model


def preset_info(name: str) -> dict[str, Any]:
    """A preset's headline numbers (parameter counts need a build; weights are not loaded)."""
    model = PinCLIP.from_preset(name, pretrained=False)
    cfg = model.config
    return {
        "name": name,
        "parameters": model.num_parameters(),
        "trainable": model.num_parameters(trainable_only=True),
        "width": cfg.width,
        "embed_dim": cfg.embed_dim,
        "image_size": cfg.image.image_size,
        "stem": cfg.image.stem,
        "stem_pretrained": cfg.image.pretrained,
        "text_encoder": cfg.text.encoder,
        "layers": f"{cfg.image.depth}/{cfg.text.depth}/{cfg.fusion.depth}",
        "pretrained_parts": pretrained_parts(cfg),
    }


def text_from_backbone(config: PinCLIPConfig) -> bool:
    """The text tower is a backbone's: its states then start with the backbone's pooled one."""
    from .backbones import BACKBONES, split_spec

    return bool(config.backbone) and "text" in BACKBONES.get(split_spec(config.backbone)[0]).towers


def text_mask(config: PinCLIPConfig, mask: Any) -> Any:
    """The text tower's mask for a tokenizer mask [B, L] (numpy or torch): a backbone's
    pooled state first (one more real token); keep_tokens keeps the first K."""
    if not text_from_backbone(config):
        return mask
    if isinstance(mask, torch.Tensor):
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
    else:
        import numpy as np

        mask = np.concatenate([np.ones_like(mask[:, :1]), mask], axis=1)
    keep = config.text.keep_tokens
    return mask[:, :keep] if keep else mask


def model_tokenizer(config: PinCLIPConfig, directory: Path) -> Any:
    """The tokenizer of a folder `save_pretrained` (or `pinclip export`) wrote, without
    building the model: the backbone's when its text tower is the backbone's."""
    if text_from_backbone(config):
        from .backbones import load_tokenizer

        return load_tokenizer(config.backbone, directory / BACKBONE_DIR)
    text_dir = directory / TEXT_ENCODER_DIR
    return build_tokenizer(config, text_dir if text_dir.is_dir() else None)


def read_config(directory: Path) -> PinCLIPConfig:
    """The PinCLIPConfig of a folder `save_pretrained` wrote."""
    data = json.loads((directory / CONFIG_FILE).read_text())
    if data.pop("format", None) != FORMAT:
        raise ModelFormatError(f"{directory / CONFIG_FILE} is not a {FORMAT} config")
    return PinCLIPConfig.from_dict(data, source=str(directory / CONFIG_FILE))


def _native_head(
    foundation: Foundation | None, tower: str, config: PinCLIPConfig, aligned: bool
) -> nn.Linear | None:
    """The aligned start's native projection of `tower` (the backbone's own, or the identity
    where its pooled output already is the embedding, as SigLIP's image tower)."""
    if not aligned or foundation is None:
        return None
    proj = getattr(foundation, f"{tower}_projection")
    hidden = getattr(foundation, tower).hidden_size
    out = proj.out_features if proj is not None else hidden
    if out != config.embed_dim:
        raise ConfigError(
            f"backbone {config.backbone!r} embeds in {out} dimensions: set embed_dim={out} "
            f"(and matryoshka_dims ending in {out}), or aligned_start=false"
        )
    return proj if proj is not None else linear_from(torch.eye(hidden))


def _as_list(items: Any, what: str) -> list:
    """One item or a sequence of them -> a non-empty list."""
    if isinstance(items, (str, Path)) or not isinstance(items, Sequence):
        items = [items]
    items = list(items)
    if not items:
        raise ValueError(f"no {what} to encode")
    return items
