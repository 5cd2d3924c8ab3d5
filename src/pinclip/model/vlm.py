"""A vision-language model as the backbone: one decoder reads the image, the text, and both.

`backbone: hf-vlm:REPO_OR_DIR` names a transformers image-text-to-text model (Qwen2-VL,
Qwen2.5-VL, Qwen3-VL, Idefics3 / SmolVLM ...) by Hub id or local `save_pretrained` folder.
`VLMEncoder` runs it up to its decoder's hidden states (no LM head) in three passes:

- image alone -> the image state,  text alone -> the text state,
- image and text in one prompt -> the joint state, PinCLIP's mid fusion,

each pooled (last real token, or attention-masked mean) at a configurable layer. The
prompts are the user messages in the config (`vlm.image_prompt` ...), rendered with the
model's own chat template (or `vlm.chat_template`). The rest of pinclip feeds it what it
feeds every tower: an image tensor [B, 3, S, S] in [0, 1] (`image.image_size`) and the
text's token ids (`text.max_length`). Each pass's prompt is rendered and tokenized once,
with its image placeholder expanded by the model's processor for an S x S image; a batch
then splices each pin's text ids into it, so loaders, DDP row slicing and serving keep
passing plain tensors.

The base weights stay frozen; LoRA adapters (peft) on `vlm.lora_targets` train with the
heads. `PinCLIP` checkpoints hold the adapters and heads only (`is_base_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pinclip.errors import ConfigError, PinclipError, require

from .backbones import BACKBONES, BackboneFamily, Foundation
from .config import VLM_PREFIX, VLMConfig
from .layers import masked_mean

PASSES = ("image", "text", "joint")
_MARK = "\ue000"  # a private-use character marks where the text goes in a rendered prompt
_BASE = "vlm.model."  # state-dict prefix of the VLM (base weights and adapters)


class VLMError(PinclipError):
    """A VLM backbone cannot be loaded or used as configured; the message says what to do."""


def is_base_key(key: str) -> bool:
    """True for a frozen base weight of the VLM (not saved in checkpoints); adapters are."""
    return key.startswith(_BASE) and "lora_" not in key


def resolve_spec(spec: str, model_dir: str | Path | None = None) -> tuple[str, bool]:
    """(path or Hub id, local files only) of `hf-vlm:X`; `./X` is relative to `model_dir`
    (a merged model folder carries its base as `hf-vlm:./base`)."""
    from .pretrained import resolve_text_source

    name = spec.removeprefix(VLM_PREFIX)
    if name.startswith("./") and model_dir is not None:
        name = str(Path(model_dir) / name[2:])
    if name.startswith(("/", "./", "../")) and not Path(name).is_dir():
        raise VLMError(f"backbone {spec!r}: folder {name} not found")
    return resolve_text_source(name)


def load_vlm(spec: str, *, dtype: torch.dtype, model_dir: str | Path | None = None):
    """(decoder model without its LM head, processor) of an `hf-vlm:` spec."""
    from transformers import AutoConfig, AutoModel, AutoProcessor
    from transformers.utils import logging as hf_logging

    source, local = resolve_spec(spec, model_dir)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
        processor = AutoProcessor.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as err:
        raise VLMError(
            f"backbone {spec!r} could not be loaded ({type(err).__name__}: {err}); pass a Hub id "
            "of an image-text-to-text model or a folder written by save_pretrained with its "
            "processor"
        ) from None
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise VLMError(f"backbone {spec!r} has no image processor and tokenizer: not a VLM")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists only the LM head, dropped on purpose
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(
            source, config=config, dtype=dtype, local_files_only=local
        )
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
    return model, processor


def _text_config(model: nn.Module) -> Any:
    cfg = model.config
    return getattr(cfg, "text_config", None) or cfg


class VLMEncoder(nn.Module):
    """Pooled hidden states of a VLM for images, texts and (image, text) pairs."""

    def __init__(
        self,
        spec: str,
        cfg: VLMConfig,
        image_size: int,
        *,
        model_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.image_size = image_size
        dtype = torch.bfloat16 if cfg.base_dtype == "bf16" else torch.float32
        base, self.processor = load_vlm(spec, dtype=dtype, model_dir=model_dir)
        self.tokenizer = self.processor.tokenizer
        self.hidden_size = int(_text_config(base).hidden_size)
        self.num_layers = int(_text_config(base).num_hidden_layers)
        if not -1 <= cfg.layer <= self.num_layers:
            raise ConfigError(
                f"vlm.layer={cfg.layer}: the decoder has {self.num_layers} layers "
                f"(use -1 for the last, 0..{self.num_layers})"
            )
        base.requires_grad_(False)
        if cfg.gradient_checkpointing:
            kwargs = {"use_reentrant": False}  # gradients reach the adapters of frozen layers
            if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x
                base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.model: nn.Module = base
        if cfg.lora_rank:
            self.model = _with_lora(base, cfg)
        self._prompts = {kind: self._render(kind) for kind in PASSES}
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        self.register_buffer(
            "special_ids", torch.tensor(sorted(self.tokenizer.all_special_ids)), persistent=False
        )

    # ----- prompts ------------------------------------------------------------------------
    def _render(self, kind: str) -> dict[str, Any]:
        """The pass's prompt around the text: prefix tensors (image placeholder expanded for
        an S x S image, the processor's per-token fields) and suffix token ids."""
        from PIL import Image

        cfg = self.cfg
        message = getattr(cfg, f"{kind}_prompt").replace("{text}", _MARK)
        content = [{"type": "text", "text": message}]
        if kind != "text":
            content.insert(0, {"type": "image"})
        try:
            rendered = self.processor.apply_chat_template(
                [{"role": "user", "content": content}],
                chat_template=cfg.chat_template,
                add_generation_prompt=cfg.generation_prompt,
                tokenize=False,
            )
        except ValueError as err:
            raise VLMError(
                f"the chat template of {self.spec!r} failed ({err}); set vlm.chat_template"
            ) from None
        prefix, _, suffix = rendered.partition(_MARK)
        extra: dict[str, Any] = {}
        if kind != "text":
            size = self.image_size
            extra = {"images": [Image.new("RGB", (size, size))], **cfg.processor_kwargs}
        # never truncated: a fast tokenizer keeps the last call's truncation in its state
        enc = self.processor(text=[prefix], return_tensors="pt", truncation=False, **extra)
        length = enc["input_ids"].shape[1]
        prefix_fields = {
            k: v[0] for k, v in enc.items() if torch.is_tensor(v) and v.shape[:2] == (1, length)
        }
        image_tokens = 0
        image_token_id = getattr(self.processor, "image_token_id", None)
        if image_token_id is not None:
            image_tokens = int((enc["input_ids"] == image_token_id).sum())
        suffix_ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
        return {
            "prefix": prefix_fields,
            "suffix": torch.tensor(suffix_ids, dtype=torch.long),
            "image_tokens": image_tokens,
        }

    @property
    def visual_tokens(self) -> int:
        """Image placeholder tokens per image at `image.image_size` (what a pixel costs)."""
        return int(self._prompts["image"]["image_tokens"])

    def prompt_tokens(self, kind: str) -> int:
        """Tokens of a pass's prompt without the text."""
        p = self._prompts[kind]
        return int(len(p["prefix"]["input_ids"]) + len(p["suffix"]))

    # ----- batches ------------------------------------------------------------------------
    def _sequences(
        self, kind: str, text: dict[str, torch.Tensor] | None, batch: int, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """[B, L] fields of a pass: prefix + the pin's text ids + suffix, right-padded."""
        prompt = self._prompts[kind]
        prefix = {k: v.to(device) for k, v in prompt["prefix"].items()}
        suffix = prompt["suffix"].to(device)
        texts: list[torch.Tensor] = [suffix.new_empty(0)] * batch
        if text is not None:
            ids = text["input_ids"].to(device)
            keep = text["attention_mask"].to(device).bool()
            keep &= ~torch.isin(ids, self.special_ids.to(device))  # no BOS/EOS inside a prompt
            texts = [row[k] for row, k in zip(ids, keep, strict=True)]
        n_pre = len(prefix["input_ids"])
        rows = [torch.cat([prefix["input_ids"], t, suffix]) for t in texts]
        length = max(len(r) for r in rows)
        out = {"input_ids": torch.full((batch, length), self.pad_id, device=device)}
        out["attention_mask"] = torch.zeros(batch, length, dtype=torch.long, device=device)
        extra = [k for k in prefix if k not in out]
        for k in extra:  # e.g. Qwen's mm_token_type_ids: 1 on image tokens, 0 elsewhere
            out[k] = torch.zeros(batch, length, dtype=prefix[k].dtype, device=device)
        for i, row in enumerate(rows):
            out["input_ids"][i, : len(row)] = row
            out["attention_mask"][i, : len(row)] = 1
            for k in extra:
                out[k][i, :n_pre] = prefix[k]
        return out

    def _pixels(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The image processor's model inputs for [B, 3, S, S] images in [0, 1]."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"the VLM expects {self.image_size}x{self.image_size} images (image.image_size), "
                f"got {tuple(images.shape[-2:])}"
            )
        enc = self.processor.image_processor(
            images=list(images.detach().float().cpu()),
            do_rescale=False,
            return_tensors="pt",
            **self.cfg.processor_kwargs,
        )
        dtype = next(self.model.parameters()).dtype
        return {
            k: v.to(images.device, dtype=dtype if v.is_floating_point() else v.dtype)
            for k, v in enc.items()
            if torch.is_tensor(v)
        }

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.cfg.pooling == "mean":
            return masked_mean(hidden, mask)
        last = mask.sum(1) - 1  # right-padded rows: the last real token
        return hidden[torch.arange(len(hidden), device=hidden.device), last]

    def encode(
        self, kind: str, images: torch.Tensor | None, text: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Pooled states [B, H] (float32) of one pass."""
        ref = images if images is not None else text["input_ids"]  # type: ignore[index]
        fields = self._sequences(kind, text if kind != "image" else None, len(ref), ref.device)
        if kind != "text":
            fields |= self._pixels(images)  # type: ignore[arg-type]
        hidden_states = self.cfg.layer != -1
        out = self.model(**fields, use_cache=False, output_hidden_states=hidden_states)
        hidden = out.hidden_states[self.cfg.layer] if hidden_states else out.last_hidden_state
        return self._pool(hidden, fields["attention_mask"]).float()

    def forward(
        self, images: torch.Tensor | None = None, text: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"image": ..., "text": ..., "joint": ...}: the passes the inputs allow."""
        out = {}
        if images is not None:
            out["image"] = self.encode("image", images, None)
        if text is not None:
            out["text"] = self.encode("text", None, text)
        if images is not None and text is not None:
            out["joint"] = self.encode("joint", images, text)
        return out

    # ----- adapters -----------------------------------------------------------------------
    def merge_adapters(self) -> None:
        """Fold the LoRA weights into the base (serving runs one matmul per layer again)."""
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()

    def save_base(self, directory: str | Path) -> None:
        """The transformers model (adapters merged or not) and its processor, as a Hub folder."""
        self.base_model().save_pretrained(directory)
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:  # not the truncation/padding of the last batch it tokenized
            backend.no_truncation()
            backend.no_padding()
        self.processor.save_pretrained(directory)

    def base_model(self) -> nn.Module:
        """The transformers model itself (with any adapters merged or not)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model


def _with_lora(base: nn.Module, cfg: VLMConfig) -> nn.Module:
    """`base` with peft LoRA adapters on `cfg.lora_targets`; only the adapters train."""
    peft = require("peft", "vlm", "vlm.lora_rank > 0 (LoRA adapters; or set vlm.lora_rank=0)")
    lora = peft.LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
    )
    try:
        return peft.get_peft_model(base, lora)
    except ValueError as err:
        raise ConfigError(f"vlm.lora_targets={list(cfg.lora_targets)}: {err}") from None


# ----- the registry entry: `hf-vlm:` beside timm / open_clip / hf / pinclip -----------------
#: The resolution the VLM's zero-shot baseline reads images at (training: image.image_size).
ZERO_SHOT_IMAGE_SIZE = 448


@dataclass
class VLMFoundation(Foundation):
    """A VLM as a foundation on its own (no adapters, no heads): its zero-shot embeddings
    are the unit pooled image and text states (`pinclip compare zero-shot:hf-vlm:...`).
    It has no `image` / `text` token towers: a PinCLIP on `hf-vlm:` builds a `VLMEncoder`."""

    encoder: VLMEncoder | None = None

    @property
    def aligned(self) -> bool:
        """One model reads both modalities: its image and text states are a zero-shot pair
        (`zero-shot:hf-vlm:...`); a PinCLIP on it builds no towers to start aligned."""
        return self.encoder is not None

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        assert self.encoder is not None
        return F.normalize(self.encoder.encode("image", pixels, None), dim=-1)

    @torch.no_grad()
    def encode_text(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.encoder is not None
        return F.normalize(self.encoder.encode("text", None, tokens), dim=-1)


def load_vlm_foundation(
    arg: str, *, weights: bool = True, saved: Path | None = None, image_size: int | None = None
) -> VLMFoundation:
    """The registry's loader: the base VLM of `hf-vlm:ARG` with the default prompts, frozen."""
    size = image_size or ZERO_SHOT_IMAGE_SIZE
    encoder = VLMEncoder(VLM_PREFIX + arg, VLMConfig(lora_rank=0), size).eval()
    return VLMFoundation(
        spec=VLM_PREFIX + arg,
        image=None,
        text=None,
        tokenizer=encoder.tokenizer,
        image_size=size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        encoder=encoder,
    )


BACKBONES.add(
    VLM_PREFIX.rstrip(":"),
    BackboneFamily(
        load_vlm_foundation, ("image", "text", "joint"), "hf-vlm:Qwen/Qwen2-VL-2B-Instruct"
    ),
    help="transformers vision-language model (Qwen2/2.5/3-VL, Idefics3/SmolVLM): one decoder "
    "reads image, text and both; LoRA adapters",
)
