"""Pretrained, untrained-on-the-catalog baselines from the offline weights PinCLIP starts from.

- `minilm`: all-MiniLM-L6-v2 sentence embeddings (mean-pooled), text only;
- `lite0`: ImageNet EfficientNet-Lite0 global-pooled penultimate features, image only;
- `minilm+lite0`: both halves L2-normalised and concatenated (a pin = image ⊕ text).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from pinclip.evaluate.data import EvalData
from pinclip.model.config import MINILM_PIP

from .base import Embedder, PinEmbeddings, normalize, register_baseline


@torch.no_grad()
def embed_images(
    model: torch.nn.Module, transform, data: EvalData, forward, batch_size: int = 64
) -> torch.Tensor:
    """`forward(model, images)` over every pin image of `data`, decoded with 2 threads."""
    images = data.catalog.pins["image"].tolist()
    load = lambda name: transform(data.catalog.load_image(name))  # noqa: E731
    out = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(images), batch_size):
            batch = torch.stack(list(pool.map(load, images[start : start + batch_size])))
            out.append(forward(model, batch).float())
    return torch.cat(out)


@register_baseline("minilm")
class MiniLMEmbedder(Embedder):
    """Mean-pooled MiniLM sentence embeddings of the pin text (title + description)."""

    name = "minilm"

    def __init__(self, encoder: str = MINILM_PIP, batch_size: int = 128) -> None:
        from pinclip.model.pretrained import load_hf_encoder, load_hf_tokenizer

        self.tokenizer = load_hf_tokenizer(encoder)
        self.model = load_hf_encoder(encoder).eval()
        self.batch_size = batch_size
        self._pins: dict[int, torch.Tensor] = {}

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
        return normalize(torch.cat(out)) if out else torch.zeros(0, self.model.config.hidden_size)

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        key = id(data)
        if key not in self._pins:
            self._pins[key] = self.embed_texts(data.texts)
        text = self._pins[key]
        return PinEmbeddings(pin=text, image=None, text=text)


@register_baseline("lite0")
class Lite0Embedder(Embedder):
    """Global-pooled penultimate features of the offline ImageNet EfficientNet-Lite0."""

    name = "lite0"

    def __init__(self, image_size: int = 224) -> None:
        from timm.data import create_transform, resolve_data_config

        from pinclip.model.pretrained import efficientnet_lite0_classifier

        self.model = efficientnet_lite0_classifier()
        cfg = resolve_data_config({"input_size": (3, image_size, image_size)}, model=self.model)
        self.transform = create_transform(**cfg)
        self._pins: dict[int, torch.Tensor] = {}

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        key = id(data)
        if key not in self._pins:
            forward = lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True)  # noqa: E731
            self._pins[key] = normalize(embed_images(self.model, self.transform, data, forward))
        image = self._pins[key]
        return PinEmbeddings(pin=image, image=image, text=None)


@register_baseline("minilm+lite0")
class ConcatEmbedder(Embedder):
    """image ⊕ text, each half unit-norm, scaled by 1/√2; a single modality is zero-padded."""

    name = "minilm+lite0"

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
