"""The backbone registry: the foundation models a PinCLIP tower can stand on.

A backbone is named by a spec string `FAMILY:ARG` in the model config (`backbone:`):

    timm:NAME                  image tower from timm: a CNN (its stride-16/32 maps, as the
                               `image.stem` path always did) or a ViT (`vit_*`, `eva*`, timm's
                               SigLIP ViTs ...; NAME@FILE loads local weights, NAME alone the
                               Hub's, a folder timm's `save_for_hf` wrote loads offline)
    open_clip:ARCH[@PRETRAINED] both towers from one open_clip model; ARCH an open_clip name or a
                               model-config JSON file, PRETRAINED an open_clip tag (online) or
                               a local weights file
    hf:REPO_OR_DIR             both towers from a transformers CLIPModel, SiglipModel or
                               Siglip2Model, by Hub id (online) or from a local folder
    pinclip:RUN_OR_MODEL_DIR   a trained PinCLIP (its image and text towers and heads) as the
                               foundation of a new run: another catalog, or more training

Without `backbone` the towers are what they always were (`image.stem` with
`image.pretrained`, e.g. the offline `efficientnet-lite0-pip`, and `text.encoder`, e.g.
`minilm-pip`), so every existing config and saved model builds bit-identically.

What a family provides (the interface a new family, e.g. a VLM's, implements): a
`BackboneFamily` registered in `BACKBONES` whose `load(arg, weights=..., saved=...)`
returns a `Foundation`:

- `image` / `text`: `TokenEncoder`s (either may be None: `timm:` has no text tower). A
  token encoder runs `embed` (inputs -> tokens), then its `layers` one `run_layer` at a
  time (so the tower can tap tokens at several depths: the image levels; and cut below the
  last N layers: `tune_last_blocks` / `tune_last_layers`), then `finish` (final norm and
  the library's own pooling -> tokens [B, L, H] and the pooled/global vector [B, H]).
  `embed_modules` / `finish_modules` name the modules outside `layers`, so the frozen
  part below a cut and the tuned part above it are exact module lists (the feature store
  fingerprints the frozen part: that is the store key, the backbone's identity).
- `image_projection` / `text_projection` (optional `nn.Linear`, pooled -> joint space) and
  `logit_scale` / `logit_bias` (log-temperature, bias): the aligned start copies them into
  the heads when both towers come from this one model.
- `tokenizer` (an HF-style callable: `tokenizer(texts, padding=, truncation=,
  max_length=, return_tensors=)` -> input_ids, attention_mask; plus `len()` and
  `save_pretrained`) and the image preprocessing (`image_size`, `mean`, `std`).
- `save(directory)`: writes what `load(arg, weights=False, saved=directory)` needs to
  rebuild the architecture offline (configs, tokenizer files; never the weights, which
  `PinCLIP.save_pretrained` writes with the rest of the model). The spec itself is
  recorded in the model's config.json.

`pinclip models` lists the families from this table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pinclip.errors import ConfigError
from pinclip.registry import Registry

#: The folder inside a saved model that holds what rebuilds its backbone offline.
BACKBONE_DIR = "backbone"


class TokenEncoder(nn.Module):
    """One tower of a foundation: `embed`, then `layers` one by one, then `finish`."""

    hidden_size: int

    def embed(
        self, inputs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens entering the first layer [B, L, H], and their padding mask (1 = real)."""
        raise NotImplementedError

    @property
    def layers(self) -> list[nn.Module]:
        raise NotImplementedError

    def run_layer(self, i: int, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def finish(
        self, x: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(final tokens [B, L, H], pooled [B, H]) from the last layer's output."""
        raise NotImplementedError

    def embed_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def finish_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def run(
        self, x: torch.Tensor, mask: torch.Tensor | None, start: int, stop: int
    ) -> torch.Tensor:
        for i in range(start, stop):
            x = self.run_layer(i, x, mask)
        return x

    def forward(
        self, inputs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole encoder: (final tokens, pooled), as the library's own forward."""
        x, mask = self.embed(inputs, mask)
        return self.finish(self.run(x, mask, 0, len(self.layers)), mask)


@dataclass
class Foundation:
    """What a backbone family loads: towers, native projections, tokenizer, preprocessing."""

    spec: str
    image: TokenEncoder | None
    text: TokenEncoder | None
    tokenizer: Any = None
    image_projection: nn.Linear | None = None
    text_projection: nn.Linear | None = None
    logit_scale: float | None = None
    logit_bias: float | None = None
    image_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    save: Callable[[Path], None] = field(default=lambda directory: None)
    #: the text tower's sequence length (None: the model config's text.max_length)
    max_length: int | None = None

    @property
    def aligned(self) -> bool:
        """Both towers from one image-text model: an aligned start is possible."""
        return self.image is not None and self.text is not None

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """The foundation's own zero-shot image embedding (unit norm)."""
        _, pooled = self.image(pixels)
        proj = self.image_projection
        return F.normalize(proj(pooled) if proj is not None else pooled, dim=-1)

    @torch.no_grad()
    def encode_text(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """The foundation's own zero-shot text embedding (unit norm)."""
        _, pooled = self.text(tokens["input_ids"], tokens["attention_mask"])
        proj = self.text_projection
        return F.normalize(proj(pooled) if proj is not None else pooled, dim=-1)


@dataclass(frozen=True)
class BackboneFamily:
    """A registered family: `load(arg, weights=bool, saved=Path|None) -> Foundation`, and
    `tokenizer(arg, saved)` -> its tokenizer alone (serving ONNX graphs needs no weights)."""

    load: Callable[..., Foundation]
    towers: tuple[str, ...]
    example: str
    tokenizer: Callable[[str, Path | None], Any] = lambda arg, saved: None


BACKBONES: Registry[BackboneFamily] = Registry("backbone family")


def split_spec(spec: str) -> tuple[str, str]:
    """'FAMILY:ARG' -> (FAMILY, ARG); an unknown family is a ConfigError naming the known."""
    family, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise ConfigError(
            f"backbone {spec!r}: write FAMILY:ARG, FAMILY one of {', '.join(BACKBONES.names())}"
        )
    BACKBONES.entry(family)
    return family, arg


def load_foundation(spec: str, *, weights: bool = True, saved: Path | None = None) -> Foundation:
    """The foundation named by `spec`; `weights=False` builds the architecture only (a
    saved model's weights are loaded over it), from `saved` when that folder exists."""
    family, arg = split_spec(spec)
    saved = saved if saved is not None and saved.is_dir() else None
    return BACKBONES.get(family).load(arg, weights=weights, saved=saved)


def load_tokenizer(spec: str, saved: Path | None = None) -> Any:
    """The tokenizer of `spec`'s text tower (None: it has none), from `saved` if given."""
    family, arg = split_spec(spec)
    saved = saved if saved is not None and saved.is_dir() else None
    return BACKBONES.get(family).tokenizer(arg, saved)


def is_timm_cnn(spec: str) -> str | None:
    """The timm model name when `spec` is `timm:NAME` of a CNN (the hybrid stride-16/32 path)."""
    if not spec.startswith("timm:"):
        return None
    name = spec.removeprefix("timm:").partition("@")[0]
    if Path(name).is_dir():
        return None
    import timm

    if name.partition(".")[0] not in timm.list_models() or _is_vit_name(name):
        return None  # (a pretrained tag such as `resnet50.a1_in1k` names the same model)
    return name


def _is_vit_name(name: str) -> bool:
    return name.startswith(("vit", "eva", "deit", "beit", "vit_", "flexivit", "naflexvit"))


def linear_from(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    """An nn.Linear holding `weight` [out, in] (and `bias`)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _additive_mask(
    mask: torch.Tensor | None, length: int, dtype: torch.dtype, *, causal: bool, device: Any
) -> torch.Tensor | None:
    """A float attention mask [B|1, 1, L, L]: -inf at padded keys (and future ones if causal)."""
    if mask is None and not causal:
        return None
    neg = torch.finfo(dtype).min
    out = torch.zeros(1, 1, length, length, dtype=dtype, device=device)
    if causal:
        out = out.masked_fill(
            torch.ones(length, length, dtype=torch.bool, device=device).triu(1), neg
        )
    if mask is not None:
        out = out.masked_fill(mask[:, None, None, :] == 0, neg)
    return out


# ----- transformers: CLIPModel, SiglipModel, Siglip2Model --------------------------------------
class HFVision(TokenEncoder):
    """The vision tower of a transformers CLIP / SigLIP / SigLIP 2 model."""

    def __init__(self, vision_model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model = vision_model
        self.kind = kind  # "clip" | "siglip" | "siglip2"
        self.hidden_size = int(vision_model.config.hidden_size)
        self.patch = int(vision_model.config.patch_size)

    def embed(self, inputs, mask=None):
        m = self.model
        if self.kind == "clip":
            return m.pre_layrnorm(m.embeddings(inputs)), None
        if self.kind == "siglip":
            return m.embeddings(inputs), None
        # SigLIP 2 (NaFlex) takes patch rows in its processor's order: (ph, pw, channel)
        b, c, h, w = inputs.shape
        gh, gw = h // self.patch, w // self.patch
        patches = inputs.reshape(b, c, gh, self.patch, gw, self.patch).permute(0, 2, 4, 3, 5, 1)
        e = m.embeddings
        x = e.patch_embedding(patches.reshape(b, gh * gw, -1))
        # one resized position grid for the batch (every image has the same size): an ONNX
        # trace keeps the batch dynamic; the values are what the model's embeddings compute
        size = e.position_embedding_size
        grid = e.position_embedding.weight.reshape(size, size, -1)
        shape = torch.tensor([[gh, gw]], device=inputs.device)
        return x + e.resize_positional_embeddings(grid, shape, max_length=gh * gw), None

    @property
    def layers(self):
        return self.model.encoder.layers

    def run_layer(self, i, x, mask):
        out = self.model.encoder.layers[i](x, None)
        return out[0] if isinstance(out, tuple) else out

    def finish(self, x, mask):
        m = self.model
        if self.kind == "clip":
            return x, m.post_layernorm(x[:, 0])
        x = m.post_layernorm(x)
        if not getattr(m, "use_head", True):
            return x, x.mean(dim=1)
        return x, m.head(x) if self.kind == "siglip" else m.head(x, None)

    def embed_modules(self):
        m = self.model
        return [m.embeddings, *([m.pre_layrnorm] if self.kind == "clip" else [])]

    def finish_modules(self):
        m = self.model
        return [m.post_layernorm, *([m.head] if getattr(m, "use_head", False) else [])]


class HFText(TokenEncoder):
    """The text tower of a transformers CLIP (causal, EOS-pooled) or SigLIP (last token)."""

    def __init__(self, text_model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model = text_model
        self.kind = kind
        self.hidden_size = int(text_model.config.hidden_size)

    def embed(self, inputs, mask=None):
        # explicit positions: an ONNX trace then keeps the sequence length dynamic
        positions = torch.arange(inputs.shape[1], device=inputs.device).unsqueeze(0)
        return self.model.embeddings(input_ids=inputs, position_ids=positions), mask

    @property
    def layers(self):
        return self.model.encoder.layers

    def run_layer(self, i, x, mask):
        attn = _additive_mask(
            mask, x.shape[1], x.dtype, causal=self.kind == "clip", device=x.device
        )
        out = self.model.encoder.layers[i](x, attn)
        return out[0] if isinstance(out, tuple) else out

    def finish(self, x, mask):
        x = self.model.final_layer_norm(x)
        if self.kind == "clip":  # the EOS token: the last real one as the tokenizer places it
            last = (
                (mask.sum(1) - 1) if mask is not None else torch.full((x.shape[0],), x.shape[1] - 1)
            )
            return x, x[torch.arange(x.shape[0], device=x.device), last.to(x.device)]
        return x, x[:, -1]  # SigLIP: the last position of the fixed-length sequence

    def embed_modules(self):
        return [self.model.embeddings]

    def finish_modules(self):
        return [self.model.final_layer_norm]


class FixedLengthTokenizer:
    """SigLIP's tokenization: every text padded to `max_length`, no padding mask (the
    model was trained so and pools the last position)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, texts, **kwargs):
        kwargs["padding"] = "max_length"
        enc = dict(self.tokenizer(texts, **kwargs))
        ids = enc["input_ids"]
        enc["attention_mask"] = ids * 0 + 1  # numpy or torch, as asked
        return enc

    def __len__(self) -> int:
        return len(self.tokenizer)

    def save_pretrained(self, directory) -> Any:
        return self.tokenizer.save_pretrained(directory)


def _hf_kind(model: nn.Module) -> str:
    name = type(model).__name__
    if name.startswith("Siglip2"):
        return "siglip2"
    if name.startswith("Siglip"):
        return "siglip"
    if name.startswith("CLIP"):
        return "clip"
    raise ConfigError(
        f"hf: backbone is a {name}; supported: CLIPModel, SiglipModel, Siglip2Model "
        "(a decoder VLM is another family)"
    )


def _load_hf(arg: str, *, weights: bool, saved: Path | None) -> Foundation:
    from transformers import AutoConfig, AutoModel

    from .pretrained import quiet_hf, resolve_text_source

    source, local = resolve_text_source(saved or arg)
    config = AutoConfig.from_pretrained(source, local_files_only=local)
    with quiet_hf():
        if weights:
            model = AutoModel.from_pretrained(source, config=config, local_files_only=local)
        else:
            model = AutoModel.from_config(config)
    kind = _hf_kind(model)
    tokenizer = _hf_tokenizer(source, local, kind)
    vc = config.vision_config
    if kind == "clip":
        from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

        mean, std = tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD)
    else:
        mean = std = (0.5, 0.5, 0.5)
    try:  # the checkpoint's own preprocessing, when it ships one
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(source, local_files_only=local)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    if kind == "siglip2":
        image_size = int(round(math.sqrt(vc.num_patches))) * int(vc.patch_size)
    else:
        image_size = int(vc.image_size)
    image_proj = getattr(model, "visual_projection", None)
    text_proj = getattr(model, "text_projection", None)
    if kind != "clip":  # SigLIP's text head is its projection; the vision head is pooling
        text_proj = model.text_model.head
    logit_bias = getattr(model, "logit_bias", None)

    def save(directory: Path) -> None:
        config.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return Foundation(
        spec=f"hf:{arg}",
        image=HFVision(model.vision_model, kind),
        text=HFText(model.text_model, kind),
        tokenizer=tokenizer,
        image_projection=_copy_linear(image_proj),
        text_projection=_copy_linear(text_proj),
        logit_scale=float(model.logit_scale.detach().reshape(-1)[0]),
        logit_bias=None if logit_bias is None else float(logit_bias.detach().reshape(-1)[0]),
        image_size=image_size,
        mean=_triple(mean),
        std=_triple(std),
        save=save,
        max_length=int(config.text_config.max_position_embeddings),
    )


def _hf_tokenizer(source: str, local: bool, kind: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    return tokenizer if kind == "clip" else FixedLengthTokenizer(tokenizer)


def _hf_tokenizer_only(arg: str, saved: Path | None) -> Any:
    from transformers import AutoConfig

    from .pretrained import resolve_text_source

    source, local = resolve_text_source(saved or arg)
    model_type = AutoConfig.from_pretrained(source, local_files_only=local).model_type
    return _hf_tokenizer(source, local, "clip" if model_type == "clip" else "siglip")


def _copy_linear(layer: nn.Linear | None) -> nn.Linear | None:
    if layer is None:
        return None
    return linear_from(layer.weight.detach(), None if layer.bias is None else layer.bias.detach())


def _triple(x: Any) -> tuple[float, float, float]:
    x = [float(v) for v in x]
    return (x[0], x[1], x[2]) if len(x) == 3 else (x[0],) * 3


# ----- open_clip ---------------------------------------------------------------------------------
class OpenCLIPVision(TokenEncoder):
    """An open_clip `VisionTransformer`."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        if not hasattr(visual, "_embeds") or not hasattr(visual, "transformer"):
            raise ConfigError(
                f"open_clip: the image tower is a {type(visual).__name__}; only ViT image "
                "towers (VisionTransformer) are supported"
            )
        self.visual = visual
        self.hidden_size = int(visual.transformer.width)

    def embed(self, inputs, mask=None):
        return self.visual._embeds(inputs), None

    @property
    def layers(self):
        return self.visual.transformer.resblocks

    def run_layer(self, i, x, mask):
        return self.visual.transformer.resblocks[i](x)

    def finish(self, x, mask):
        pooled, tokens = self.visual._pool(x)
        return tokens, pooled

    def embed_modules(self):
        v = self.visual
        return [
            v.conv1,
            v.ln_pre,
            v.patch_dropout,
            _Params(v.class_embedding, v.positional_embedding),
        ]

    def finish_modules(self):
        v = self.visual
        return [v.ln_post, *([v.attn_pool] if v.attn_pool is not None else [])]


class _Params(nn.Module):
    """Loose parameters (a class token, position embeddings) as one module."""

    def __init__(self, *params: nn.Parameter) -> None:
        super().__init__()
        self.params = nn.ParameterList(list(params))


class OpenCLIPText(TokenEncoder):
    """open_clip's CLIP text transformer (causal, pooled at the end-of-text token)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        t = getattr(model, "text", model)
        if getattr(t, "cls_emb", None) is not None or not hasattr(t, "token_embedding"):
            raise ConfigError("open_clip: only CLIP-style text towers are supported")
        # the text parts alone (a CLIP holds them beside its visual tower)
        self.t = nn.Module()
        for name in ("token_embedding", "transformer", "ln_final"):
            setattr(self.t, name, getattr(t, name))
        self.t.positional_embedding = t.positional_embedding
        self.t.register_buffer("attn_mask", t.attn_mask, persistent=False)
        self.projection = (t.text_projection,)  # copied into the aligned head, not kept here
        self.hidden_size = int(t.transformer.width)

    def embed(self, inputs, mask=None):
        x = self.t.token_embedding(inputs)
        return x + self.t.positional_embedding[: x.shape[1]], mask

    @property
    def layers(self):
        return self.t.transformer.resblocks

    def run_layer(self, i, x, mask):
        n = x.shape[1]
        return self.t.transformer.resblocks[i](x, attn_mask=self.t.attn_mask[:n, :n])

    def finish(self, x, mask):
        x = self.t.ln_final(x)
        last = mask.sum(1) - 1  # the end-of-text token (its id is the vocabulary's largest)
        return x, x[torch.arange(x.shape[0], device=x.device), last.to(x.device)]

    def embed_modules(self):
        return [self.t.token_embedding, _Params(self.t.positional_embedding)]

    def finish_modules(self):
        return [self.t.ln_final]


class OpenCLIPTokenizer:
    """open_clip's tokenizer behind the HF call the rest of pinclip uses (pad id 0)."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(
        self, texts, padding=True, truncation=True, max_length=None, return_tensors="pt", **_: Any
    ) -> dict[str, Any]:
        length = min(max_length or self.context_length, self.context_length)
        ids = self.tokenizer(list(texts), context_length=length)
        mask = (ids != 0).long()
        if padding != "max_length":  # pad to the longest text, as HF's padding=True
            longest = max(int(mask.sum(1).max()), 1)
            ids, mask = ids[:, :longest], mask[:, :longest]
        if return_tensors == "np":
            return {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        return {"input_ids": ids, "attention_mask": mask}

    def __len__(self) -> int:
        return int(getattr(self.tokenizer, "vocab_size", 0) or len(self.tokenizer.encoder))

    def save_pretrained(self, directory) -> None:
        """Nothing to write: the tokenizer ships with open_clip (the spec names it)."""


def _open_clip_name(arg: str, saved: Path | None) -> str:
    """The open_clip model name of `arg` (a model-config JSON file is registered first)."""
    import open_clip

    arch = arg.partition("@")[0]
    config_file = next(iter(sorted(saved.glob("*.json"))), None) if saved else None
    if config_file is None and arch.endswith(".json"):
        config_file = Path(arch)
    if config_file is not None:  # a model config of one's own: registered under its file name
        if not config_file.is_file():
            raise ConfigError(f"open_clip: model config {config_file} does not exist")
        open_clip.add_model_config(config_file)
        name = config_file.stem
    else:
        name = arch
    if open_clip.get_model_config(name) is None:
        raise ConfigError(f"open_clip: unknown model {name!r} (see open_clip.list_models())")
    return name


def _open_clip_tokenizer(arg: str, saved: Path | None) -> OpenCLIPTokenizer:
    import open_clip

    name = _open_clip_name(arg, saved)
    length = int(open_clip.get_model_config(name)["text_cfg"].get("context_length", 77))
    return OpenCLIPTokenizer(open_clip.get_tokenizer(name), length)


def _load_open_clip(arg: str, *, weights: bool, saved: Path | None) -> Foundation:
    import open_clip

    pretrained = arg.partition("@")[2]
    name = _open_clip_name(arg, saved)
    cfg = open_clip.get_model_config(name)
    model = open_clip.create_model(name, pretrained=None)
    if weights and pretrained:
        if Path(pretrained).is_file():
            from .pretrained import load_state_file

            model.load_state_dict(load_state_file(pretrained))
        else:
            model = open_clip.create_model(name, pretrained=pretrained)
    model.eval()
    tokenizer = _open_clip_tokenizer(arg, saved)
    visual = model.visual
    pp = getattr(visual, "preprocess_cfg", {}) or {}
    size = visual.image_size
    size = int(size[0] if isinstance(size, list | tuple) else size)
    tower_text = OpenCLIPText(model)
    proj_v = visual.proj
    proj_t = tower_text.projection[0]

    def save(directory: Path) -> None:
        (directory / f"{name}.json").write_text(json.dumps(cfg, indent=2) + "\n")

    bias = getattr(model, "logit_bias", None)
    return Foundation(
        spec=f"open_clip:{arg}",
        image=OpenCLIPVision(visual),
        text=tower_text,
        tokenizer=tokenizer,
        image_projection=None if proj_v is None else linear_from(proj_v.detach().T),
        text_projection=(
            None
            if proj_t is None
            else _copy_linear(proj_t)
            if isinstance(proj_t, nn.Linear)
            else linear_from(proj_t.detach().T)
        ),
        logit_scale=float(model.logit_scale.detach()),
        logit_bias=None if bias is None else float(bias.detach()),
        image_size=size,
        mean=_triple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=_triple(pp.get("std", open_clip.OPENAI_DATASET_STD)),
        save=save,
        max_length=tokenizer.context_length,
    )


# ----- timm ViTs -----------------------------------------------------------------------------------
class TimmViT(TokenEncoder):
    """A timm VisionTransformer-style model (patch_embed, blocks, norm, forward_head)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not (hasattr(model, "blocks") and hasattr(model, "patch_embed")):
            raise ConfigError(
                f"timm model {type(model).__name__} is neither a ViT (blocks + patch_embed) "
                "nor a CNN with stride-16/32 stages"
            )
        self.model = model
        self.hidden_size = int(model.num_features)

    def embed(self, inputs, mask=None):
        m = self.model
        x = m._pos_embed(m.patch_embed(inputs))
        x = m.patch_drop(x) if hasattr(m, "patch_drop") else x
        return (m.norm_pre(x) if hasattr(m, "norm_pre") else x), None

    @property
    def layers(self):
        return self.model.blocks

    def run_layer(self, i, x, mask):
        return self.model.blocks[i](x)

    def finish(self, x, mask):
        x = self.model.norm(x)
        return x, self.model.forward_head(x, pre_logits=True)

    def embed_modules(self):
        m = self.model
        pos = [
            p
            for p in (
                getattr(m, "cls_token", None),
                getattr(m, "pos_embed", None),
                getattr(m, "reg_token", None),
            )
            if p is not None
        ]
        return [
            m.patch_embed,
            *[getattr(m, n) for n in ("norm_pre",) if hasattr(m, n)],
            _Params(*pos),
        ]

    def finish_modules(self):
        m = self.model
        return [
            m.norm,
            *[getattr(m, n) for n in ("fc_norm", "attn_pool") if getattr(m, n, None) is not None],
        ]


def _load_timm(arg: str, *, weights: bool, saved: Path | None) -> Foundation:
    import timm
    from timm.data import resolve_data_config

    from pinclip.errors import InputError

    name, _, weights_file = arg.partition("@")
    folder = saved or (Path(name) if Path(name).is_dir() else None)
    if folder is not None:  # a folder timm's save_for_hf / push_to_hf_hub wrote (or ours)
        cfg = json.loads((folder / "config.json").read_text())
        files = [folder / f for f in ("model.safetensors", "pytorch_model.bin")]
        weights_file = weights_file or str(next((f for f in files if f.is_file()), files[0]))
    else:
        cfg = {"architecture": name, "model_args": {}, "pretrained_cfg": {}}
    args = {k: v for k, v in cfg.get("model_args", {}).items() if k != "num_classes"}
    online = weights and folder is None and not weights_file
    model = timm.create_model(cfg["architecture"], pretrained=online, num_classes=0, **args)
    if weights and weights_file:
        from .pretrained import load_state_file

        state = {
            k: v for k, v in load_state_file(weights_file).items() if not k.startswith("head.")
        }
        missing = sorted(set(model.state_dict()) - set(state))
        if missing:
            raise InputError(
                f"timm weights {weights_file} lack {len(missing)} tensors: {missing[:3]}"
            )
        model.load_state_dict(state, strict=False)  # a classifier head, if any, is dropped
    model.eval()
    pretrained_cfg = cfg.get("pretrained_cfg") or dict(model.pretrained_cfg)
    data = resolve_data_config(pretrained_cfg, model=model)

    def save(directory: Path) -> None:  # the architecture, for an offline reload
        out = {"architecture": cfg["architecture"], "model_args": args}
        out["pretrained_cfg"] = {k: v for k, v in pretrained_cfg.items() if _jsonable(v)}
        (directory / "config.json").write_text(json.dumps(out, indent=2) + "\n")

    return Foundation(
        spec=f"timm:{arg}",
        image=TimmViT(model),
        text=None,
        image_size=int(data["input_size"][-1]),
        mean=_triple(data["mean"]),
        std=_triple(data["std"]),
        save=save,
    )


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


# ----- pinclip ------------------------------------------------------------------------------------
class PinCLIPImage(TokenEncoder):
    """A trained PinCLIP image tower: its tokens before the adapter layers, the layers, the
    final norm; the pooled vector is the CLS state (what its image head projects)."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.hidden_size = int(tower.norm.normalized_shape[0])

    def embed(self, inputs, mask=None):
        return self.tower.input_tokens(self.tower.stem_features(inputs))[0], None

    @property
    def layers(self):
        blocks = self.tower.blocks
        return blocks.layers if hasattr(blocks, "layers") else []

    def run_layer(self, i, x, mask):
        return self.layers[i](x)

    def finish(self, x, mask):
        x = self.tower.norm(x)
        return x, x[:, 0]

    def embed_modules(self):
        t = self.tower
        return [m for n, m in t.named_children() if n not in ("blocks", "norm")]

    def finish_modules(self):
        return [self.tower.norm]


class PinCLIPText(TokenEncoder):
    """A trained PinCLIP text tower: encoder states projected, its adapter layers, the final
    norm; the pooled vector is the masked mean (what its text head projects)."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.hidden_size = int(tower.norm.normalized_shape[0])

    def embed(self, inputs, mask=None):
        states = self.tower.encoder_states({"input_ids": inputs, "attention_mask": mask})
        return self.tower.proj(states["hidden_states"]), states["attention_mask"]

    @property
    def layers(self):
        blocks = self.tower.blocks
        return blocks.layers if hasattr(blocks, "layers") else []

    def run_layer(self, i, x, mask):
        return self.layers[i](x, src_key_padding_mask=mask == 0)

    def finish(self, x, mask):
        from .layers import masked_mean

        x = self.tower.norm(x)
        return x, masked_mean(x, mask)

    def embed_modules(self):
        return [self.tower.encoder, self.tower.proj]

    def finish_modules(self):
        return [self.tower.norm]


def _pinclip_tokenizer(arg: str, saved: Path | None) -> Any:
    from .model import TEXT_ENCODER_DIR, read_config
    from .text_tower import build_tokenizer

    directory = saved or _pinclip_dir(arg)
    text_dir = directory / TEXT_ENCODER_DIR
    return build_tokenizer(read_config(directory), text_dir if text_dir.is_dir() else None)


def _pinclip_dir(arg: str) -> Path:
    from pinclip.errors import NotFoundError

    from .model import CONFIG_FILE

    path = Path(arg)
    directory = path if (path / CONFIG_FILE).is_file() else path / "best"
    if not (directory / CONFIG_FILE).is_file():
        raise NotFoundError(
            f"pinclip:{arg}: neither a model dir (config.json) nor a run dir with best/"
        )
    return directory


def _load_pinclip(arg: str, *, weights: bool, saved: Path | None) -> Foundation:
    from .model import TEXT_ENCODER_DIR, PinCLIP, read_config

    if saved is not None:
        config = read_config(saved)
        text_dir = saved / TEXT_ENCODER_DIR
        model = PinCLIP(
            config, load_pretrained=False, text_source=text_dir if text_dir.is_dir() else None
        )
    else:
        model = PinCLIP.from_pretrained(
            _pinclip_dir(arg)
        )  # trained weights are its architecture too
    model.eval()
    cfg = model.config

    def save(directory: Path) -> None:
        model.save_config(directory)

    return Foundation(
        spec=f"pinclip:{arg}",
        image=PinCLIPImage(model.image),
        text=PinCLIPText(model.text),
        tokenizer=model.tokenizer,
        image_projection=_copy_linear(model.image_head.proj),
        text_projection=_copy_linear(model.text_head.proj),
        logit_scale=float(model.logit_scale.detach()),
        logit_bias=float(model.logit_bias.detach()),
        image_size=cfg.image.image_size,
        mean=cfg.image.mean,
        std=cfg.image.std,
        save=save,
        max_length=cfg.text.max_length,
    )


# The table (registration order = `pinclip models` order).
BACKBONES.add(
    "timm",
    BackboneFamily(_load_timm, ("image",), "timm:vit_base_patch16_siglip_224"),
    help="timm image model: a CNN (stride-16/32 maps) or a ViT (multi-depth tokens)",
)
BACKBONES.add(
    "open_clip",
    BackboneFamily(
        _load_open_clip,
        ("image", "text"),
        "open_clip:ViT-B-32@laion2b_s34b_b79k",
        _open_clip_tokenizer,
    ),
    help="open_clip model, both towers (ViT image tower), aligned start",
)
BACKBONES.add(
    "hf",
    BackboneFamily(
        _load_hf, ("image", "text"), "hf:google/siglip2-base-patch16-224", _hf_tokenizer_only
    ),
    help="transformers CLIPModel / SiglipModel / Siglip2Model, both towers, aligned start",
)
BACKBONES.add(
    "pinclip",
    BackboneFamily(_load_pinclip, ("image", "text"), "pinclip:runs/foundation", _pinclip_tokenizer),
    help="a trained PinCLIP run or model dir as the foundation of a new run",
)

# The vision-language family lives in its own module (`hf-vlm:`); importing it registers it.
from . import vlm as _vlm  # noqa: E402, F401
