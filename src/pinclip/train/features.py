"""Model inputs for any set of pins: cached frozen features, or images and tokens on the fly.

With a frozen stem and text encoder (the CPU default), their outputs for every pin are
computed once into the on-disk `FeatureCache` (shared by runs and resumes) and held in
memory as tensors, so a training step runs only the trainable parts. Unfrozen parts get
decoded images (eval transform, so a batch is a pure function of its pins) and tokens.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from pinclip.model import FeatureCache, PinCLIP

from .data import TrainingData


@dataclass
class PinInputs:
    image_features: list[torch.Tensor] | None  # frozen stem maps of every pin
    text_states: dict[str, torch.Tensor] | None  # frozen encoder states of every pin
    tokens: dict[str, torch.Tensor] | None  # token ids when the text encoder trains
    image_loader: Any  # callable(idx) -> images tensor when the stem trains
    device: torch.device

    @classmethod
    def prepare(
        cls,
        model: PinCLIP,
        data: TrainingData,
        *,
        cache_dir: Path,
        device: torch.device,
        console: Console,
    ) -> PinInputs:
        cfg = model.config
        paths = [data.catalog.image_path(p) for p in data.catalog.pins["image"]]
        cache = (
            FeatureCache(cache_dir / "features", model)
            if (cfg.freeze_stem or cfg.freeze_text_encoder)
            else None
        )
        show = console.is_terminal
        image_features = text_states = tokens = loader = None
        if cfg.freeze_stem:
            keys = cache.precompute_images(paths, progress=show)
            image_features = _chunked(lambda k: cache.load_image_features(k), keys)
        else:
            loader = _ImageLoader(data, model.image_transform(train=False))
        if cfg.freeze_text_encoder:
            keys = cache.precompute_texts(data.texts, progress=show)
            text_states = _chunked_text(cache, keys)
        else:
            tokens = model.tokenize(data.texts)
        return cls(image_features, text_states, tokens, loader, device)

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Keyword arguments of `PinCLIP.forward` for pins `idx`."""
        t = torch.as_tensor(idx)
        out: dict[str, Any] = {}
        if self.image_features is not None:
            out["image_features"] = [f[t].to(self.device) for f in self.image_features]
        else:
            out["images"] = self.image_loader(idx).to(self.device)
        if self.text_states is not None:
            mask = self.text_states["attention_mask"][t]
            length = max(int(mask.sum(1).max()), 1)
            out["text_states"] = {
                "hidden_states": self.text_states["hidden_states"][t, :length].to(self.device),
                "attention_mask": mask[:, :length].to(self.device),
            }
        else:
            mask = self.tokens["attention_mask"][t]
            length = max(int(mask.sum(1).max()), 1)
            out["text"] = {k: v[t, :length].to(self.device) for k, v in self.tokens.items()}
        return out


def _chunked(load, keys: list[str], size: int = 512) -> list[torch.Tensor]:
    parts = [load(keys[i : i + size]) for i in range(0, len(keys), size)]
    return [torch.cat([p[level] for p in parts]) for level in range(len(parts[0]))]


def _chunked_text(cache: FeatureCache, keys: list[str], size: int = 512) -> dict[str, torch.Tensor]:
    parts = [cache.load_text_states(keys[i : i + size]) for i in range(0, len(keys), size)]
    length = max(p["hidden_states"].shape[1] for p in parts)
    hidden = torch.cat(
        [
            torch.nn.functional.pad(
                p["hidden_states"], (0, 0, 0, length - p["hidden_states"].shape[1])
            )
            for p in parts
        ]
    )
    mask = torch.cat(
        [
            torch.nn.functional.pad(p["attention_mask"], (0, length - p["attention_mask"].shape[1]))
            for p in parts
        ]
    )
    return {"hidden_states": hidden, "attention_mask": mask}


class _ImageLoader:
    """Decode and transform a batch of pin images with a thread pool (Pillow releases the GIL)."""

    def __init__(self, data: TrainingData, transform) -> None:
        self.catalog = data.catalog
        self.images = data.catalog.pins["image"].tolist()
        self.transform = transform
        self.pool = ThreadPoolExecutor(max_workers=2)

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        load = lambda i: self.transform(self.catalog.load_image(self.images[i]))  # noqa: E731
        return torch.stack(list(self.pool.map(load, idx)))
