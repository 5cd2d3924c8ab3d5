"""Pretrained, untrained-on-the-catalog baselines from the offline weights PinCLIP starts from.

- `minilm`: all-MiniLM-L6-v2 sentence embeddings (mean-pooled), text only;
- `lite0`: ImageNet EfficientNet-Lite0 global-pooled penultimate features, image only;
- `minilm+lite0`: both halves L2-normalised and concatenated (a pin = image ⊕ text).

These are the outputs PinCLIP's frozen parts compute, so when a PinCLIP run of the same
split is evaluated with them, its feature store already holds them: `StoredFeatures`
reads them back instead of running the encoders over the catalog again (the store's
MiniLM token states, masked-mean pooled; the head conv, BN and pool of EfficientNet-Lite0
applied to the store's stride-32 map). A few items are checked against the encoders run
directly first; a store that holds anything else (other weights, other preprocessing,
states below a tuned top layer) is not used, and the baseline computes its features.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console

from pinclip.data.catalog import TextColumn
from pinclip.evaluate.data import EvalData
from pinclip.model.config import LITE0_PIP, MINILM_PIP

from .base import (
    BASELINES,
    Baseline,
    BaselineContext,
    Embedder,
    PinEmbeddings,
    normalize,
    register_baseline,
)

if TYPE_CHECKING:
    from pinclip.model import FeatureTable, PinCLIP

#: Least cosine between a stored-feature embedding and the encoder run directly (a margin
#: for fp16 or int8 storage); below it the store holds something else.
SAME_FEATURES_COS = 0.999
_CHECKED_ITEMS = 8  # items per baseline checked against the encoder run directly
_READ_ROWS = 1024  # store rows read at a time


class StoredFeatures:
    """The frozen MiniLM / EfficientNet-Lite0 outputs a PinCLIP run's feature store holds.

    `model` is the evaluated PinCLIP (its frozen parts name the store's namespace); the
    store is the one of the split's config (`data.config.cache_dir`, `feature_dtype`).
    Each method returns None when the store cannot stand in for the baseline.
    """

    def __init__(self, model: PinCLIP, console: Console | None = None) -> None:
        self.model = model
        self.console = console or Console(quiet=True)

    def _table(self, data: EvalData, kind: str, items: list) -> FeatureTable | None:
        from pinclip.model import FeatureStore, FeatureStoreError

        if self.model.is_vlm:  # a VLM backbone trains without a feature store
            return None
        cfg = data.config
        store = FeatureStore(
            Path(cfg.cache_dir) / "features",
            self.model,
            dtype=cfg.feature_dtype,
            text_compute=cfg.feature_text_compute,
        )
        try:
            return store.table(kind, items)
        except FeatureStoreError:  # not built for these items: the baseline computes them
            return None

    def _agrees(self, name: str, stored: torch.Tensor, direct: torch.Tensor) -> bool:
        cos = float((normalize(stored) * normalize(direct)).sum(1).min())
        if cos < SAME_FEATURES_COS:
            self.console.print(
                f"{name}: the feature store holds other features (cosine {cos:.4f} to the "
                "encoder run directly); computing them instead"
            )
        return cos >= SAME_FEATURES_COS

    @torch.no_grad()
    def text_means(self, data: EvalData, baseline: MiniLMEmbedder) -> torch.Tensor | None:
        """`baseline`'s embedding of every pin text from the stored MiniLM token states."""
        cfg = self.model.config
        if not (cfg.freeze_text_encoder and cfg.text.encoder == baseline.encoder) or (
            cfg.backbone  # a foundation's text tower: the store holds its states, not MiniLM's
        ):
            return None
        table = self._table(data, "texts", data.texts)
        if table is None:
            return None
        # texts longer than the store's max_length were truncated there: embed those directly
        texts = data.texts  # an Arrow-backed sequence: tokenized a slice (a list) at a time
        lengths = np.array(
            [
                len(ids)
                for start in range(0, len(texts), _READ_ROWS)
                for ids in baseline.tokenizer(texts[start : start + _READ_ROWS])["input_ids"]
            ],
            dtype=np.int64,
        )
        longer = np.flatnonzero(lengths > cfg.text.max_length)
        out = []
        for start in range(0, len(table), _READ_ROWS):
            states = table.text_states(np.arange(start, min(start + _READ_ROWS, len(table))))
            hidden, mask = states["hidden_states"], states["attention_mask"]
            if cfg.text.keep_tokens:  # the first stored state is the masked mean itself
                out.append(hidden[:, 0])
            else:
                m = mask.unsqueeze(-1).float()
                out.append((hidden * m).sum(1) / m.sum(1).clamp(min=1))
        text = normalize(torch.cat(out)) if out else torch.zeros(0, baseline.dim)
        if len(longer):
            text[torch.as_tensor(longer)] = baseline.embed_texts([data.texts[i] for i in longer])
        check = _sample(len(text))
        if not self._agrees(
            baseline.name, text[check], baseline.embed_texts([data.texts[i] for i in check])
        ):
            return None
        return text

    @torch.no_grad()
    def image_features(self, data: EvalData, baseline: Lite0Embedder) -> torch.Tensor | None:
        """`baseline`'s features of every pin image from the stored stride-32 stem maps."""
        cfg = self.model.config
        if not (
            type(self.model.image).__name__ == "ImageTower"  # a CNN stem, not a ViT backbone
            and cfg.freeze_stem
            and cfg.image.stem == "tf_efficientnet_lite0"
            and cfg.image.pretrained == LITE0_PIP
            # the store's pixels are the baseline's own only with the same transform (the
            # `small` preset's 128 px are not the baseline's 224: features at cosine ~0.5-0.7)
            and repr(self.model.image_transform(train=False)) == repr(baseline.transform)
        ):
            return None
        table = self._table(data, "images", data.catalog.image_paths())
        if table is None:
            return None
        head = baseline.model
        out = []
        for start in range(0, len(table), _READ_ROWS):
            maps = table.image_features(np.arange(start, min(start + _READ_ROWS, len(table))))
            x = head.bn2(head.conv_head(maps[-1]))  # the stride-32 map is the last stage's
            out.append(head.forward_head(x, pre_logits=True))
        image = normalize(torch.cat(out)) if out else torch.zeros(0, head.num_features)
        check = _sample(len(image))
        if not self._agrees(baseline.name, image[check], baseline.embed_images(data, check)):
            return None
        return image


def _sample(n: int) -> np.ndarray:
    """Evenly spread rows to check stored features against."""
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, _CHECKED_ITEMS)).astype(np.int64))


@torch.no_grad()
def embed_images(
    model: torch.nn.Module,
    transform,
    data: EvalData,
    forward,
    batch_size: int = 64,
    pins: np.ndarray | None = None,
) -> torch.Tensor:
    """`forward(model, images)` over every pin image of `data` (or of `pins`), decoded with
    2 threads."""
    images = TextColumn(data.catalog.column("pins", "image"))  # Arrow, not a list
    if pins is not None:
        images = [images[i] for i in pins]
    load = lambda name: transform(data.catalog.load_image(name))  # noqa: E731
    out = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(images), batch_size):
            batch = torch.stack(list(pool.map(load, images[start : start + batch_size])))
            # NHWC input: the convolutions run in that layout, ~1.7x faster on the CPU
            batch = batch.contiguous(memory_format=torch.channels_last)
            out.append(forward(model, batch).float())
    return torch.cat(out)


@register_baseline("minilm", help="all-MiniLM-L6-v2, mean-pooled, offline, text only", shared=True)
class MiniLMEmbedder(Embedder):
    """Mean-pooled MiniLM sentence embeddings of the pin text (title + description)."""

    name = "minilm"

    def __init__(
        self,
        encoder: str = MINILM_PIP,
        batch_size: int = 128,
        stored: StoredFeatures | None = None,
    ) -> None:
        from pinclip.model.pretrained import load_hf_encoder, load_hf_tokenizer

        self.encoder = encoder
        self.tokenizer = load_hf_tokenizer(encoder)
        self.model = load_hf_encoder(encoder).eval()
        self.batch_size = batch_size
        self.stored = stored  # a feature store that may already hold these features
        self._pins: dict[int, torch.Tensor] = {}

    def use_stored_features(self, stored: StoredFeatures) -> None:
        self.stored = stored

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            states = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append((states * mask).sum(1) / mask.sum(1).clamp(min=1))
        return normalize(torch.cat(out)) if out else torch.zeros(0, self.dim)

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        key = id(data)
        if key not in self._pins:
            text = self.stored.text_means(data, self) if self.stored else None
            self._pins[key] = text if text is not None else self.embed_texts(data.texts)
        text = self._pins[key]
        return PinEmbeddings(pin=text, image=None, text=text)


@register_baseline(
    "lite0",
    help="ImageNet EfficientNet-Lite0 global-pooled features, offline, image only",
    shared=True,
)
class Lite0Embedder(Embedder):
    """Global-pooled penultimate features of the offline ImageNet EfficientNet-Lite0."""

    name = "lite0"

    def __init__(
        self,
        image_size: int = 224,
        crop_pct: float | None = None,
        stored: StoredFeatures | None = None,
    ) -> None:
        from timm.data import create_transform, resolve_data_config

        from pinclip.model.pretrained import efficientnet_lite0_classifier

        self.model = efficientnet_lite0_classifier()
        cfg = resolve_data_config({"input_size": (3, image_size, image_size)}, model=self.model)
        if crop_pct is not None:  # None: timm's default for the model (0.875)
            cfg["crop_pct"] = crop_pct
        self.transform = create_transform(**cfg)
        self.stored = stored  # a feature store that may already hold these features
        self._pins: dict[int, torch.Tensor] = {}

    def use_stored_features(self, stored: StoredFeatures) -> None:
        self.stored = stored

    def embed_images(self, data: EvalData, pins: np.ndarray | None = None) -> torch.Tensor:
        """Features of the images of `pins` (default: every pin), from the pixels."""
        forward = lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True)  # noqa: E731
        return normalize(embed_images(self.model, self.transform, data, forward, pins=pins))

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        key = id(data)
        if key not in self._pins:
            image = self.stored.image_features(data, self) if self.stored else None
            self._pins[key] = image if image is not None else self.embed_images(data)
        image = self._pins[key]
        return PinEmbeddings(pin=image, image=image, text=None)


class ConcatEmbedder(Embedder):
    """image ⊕ text, each half unit-norm, scaled by 1/√2; a single modality is zero-padded."""

    name = "minilm+lite0"
    not_applicable = {
        task: "image and text halves are zero-padded into disjoint coordinates, so every "
        "cross-modal score is 0 by construction"
        for task in ("text_to_image", "image_to_text")
    }

    def __init__(
        self, image: Lite0Embedder | None = None, text: MiniLMEmbedder | None = None
    ) -> None:
        self.image_model = image or Lite0Embedder()
        self.text_model = text or MiniLMEmbedder()

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        image = self.image_model.embed_pins(data).image
        text = self.text_model.embed_pins(data).text
        zeros_i, zeros_t = torch.zeros_like(image), torch.zeros_like(text)
        return PinEmbeddings(
            pin=torch.cat([image, text], dim=1) / np.sqrt(2.0),
            image=torch.cat([image, zeros_t], dim=1),
            text=torch.cat([zeros_i, text], dim=1),
        )

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        text = self.text_model.embed_texts(texts)
        return torch.cat(
            [torch.zeros(len(texts), self.image_model.model.num_features), text], dim=1
        )


def _concat(context: BaselineContext, value: None, **options) -> ConcatEmbedder:
    """`minilm+lite0` from the comparison's own `lite0` and `minilm` (loaded once)."""
    if options:
        return ConcatEmbedder(**options)
    return ConcatEmbedder(context.shared("lite0"), context.shared("minilm"))


BASELINES.add(
    "minilm+lite0",
    Baseline(_concat, shared=True),
    help="both halves L2-normalised and concatenated (a pin = image ⊕ text)",
)
