"""The foundation's own zero-shot embeddings: the first baseline a model standing on a
foundation has to beat (`pinclip compare zero-shot:SPEC`, SPEC a backbone spec such as
`hf:google/siglip2-base-patch16-224`, `open_clip:ViT-B-32@laion2b_s34b_b79k` or
`pinclip:runs/foundation`).

Image and text are the backbone's own pooled outputs through its own projections, unit
norm; a pin is their normalised mean. These are exactly the embeddings a PinCLIP on that
backbone starts from with `aligned_start` (tests/model/test_backbones.py checks both to
1e-5), so the comparison says what training on the catalog's graph added.
"""

from __future__ import annotations

import torch

from pinclip.errors import InputError
from pinclip.evaluate.data import EvalData

from .base import Embedder, PinEmbeddings, normalize, register_baseline
from .pretrained import embed_images

PREFIX = "zero-shot:"


@register_baseline(
    "zero-shot", arg="SPEC", help="a foundation's own embeddings, no training (SPEC: a backbone)"
)
class ZeroShotEmbedder(Embedder):
    """A two-tower backbone alone: no layer trained on the catalog."""

    def __init__(self, spec: str, batch_size: int = 64) -> None:
        from pinclip.model.backbones import load_foundation
        from pinclip.model.config import ImageConfig, PinCLIPConfig, TextConfig
        from pinclip.model.model import image_transform

        self.spec = spec
        self.name = f"{PREFIX}{spec}"
        self.foundation = load_foundation(spec)
        if not self.foundation.aligned:
            raise InputError(
                f"{self.name}: a zero-shot baseline needs an image-text backbone (both towers); "
                f"{spec.partition(':')[0]}: has no text tower"
            )
        f = self.foundation
        image = ImageConfig(image_size=f.image_size, mean=f.mean, std=f.std)
        self.transform = image_transform(PinCLIPConfig(backbone=spec, image=image))
        self.max_length = min(TextConfig().max_length, f.max_length or TextConfig().max_length)
        self.batch_size = batch_size
        self._pins: dict[int, PinEmbeddings] = {}

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        key = id(data)
        if key not in self._pins:
            image = normalize(
                embed_images(
                    self.foundation,
                    self.transform,
                    data,
                    lambda f, x: f.encode_image(x.contiguous()),
                    batch_size=self.batch_size,
                )
            )
            text = self.embed_texts(list(data.texts))
            self._pins[key] = PinEmbeddings(pin=normalize(image + text), image=image, text=text)
        return self._pins[key]

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        from pinclip.model.text_tower import tokenize

        out = [
            self.foundation.encode_text(
                tokenize(self.foundation.tokenizer, texts[i : i + 256], self.max_length)
            ).float()
            for i in range(0, len(texts), 256)
        ]
        return normalize(torch.cat(out)) if out else torch.zeros(0, 1)
