"""Model inputs for any set of pins: stored frozen features, or images and tokens on the fly.

With a frozen stem and text encoder (the CPU default), their outputs for every pin are
computed once into the on-disk `FeatureStore` (shared by runs, resumes and DDP ranks) and
read back by row from memory-mapped segments, so a training step runs only the trainable
parts and the process's memory does not grow with the catalog. Unfrozen parts get decoded
images (eval transform, so a batch is a pure function of its pins) and tokens.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from pinclip.model import FeatureStore, FeatureTable, PinCLIP

from .data import TrainingData


@dataclass
class PinInputs:
    image_table: FeatureTable | None  # frozen stem maps of every pin, by pin index
    text_table: FeatureTable | None  # frozen encoder states of every pin, by pin index
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
        feature_dtype: str = "fp16",
        workers: int = 1,
    ) -> PinInputs:
        """Build (or reuse) the stored features of every pin of `data` for `model`."""
        cfg = model.config
        store = FeatureStore(Path(cache_dir) / "features", model, dtype=feature_dtype)
        image_table = text_table = tokens = loader = None
        if cfg.freeze_stem:
            paths = [data.catalog.image_path(p) for p in data.catalog.pins["image"]]
            image_table = store.build("images", paths, workers=workers, console=console)
        else:
            loader = _ImageLoader(data, model.image_transform(train=False))
        if cfg.freeze_text_encoder:
            text_table = store.build("texts", data.texts, workers=workers, console=console)
        else:
            tokens = model.tokenize(data.texts)
        return cls(image_table, text_table, tokens, loader, device)

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Keyword arguments of `PinCLIP.forward` for pins `idx`."""
        t = torch.as_tensor(idx)
        out: dict[str, Any] = {}
        if self.image_table is not None:
            out["image_features"] = [
                f.to(self.device) for f in self.image_table.image_features(idx)
            ]
        else:
            out["images"] = self.image_loader(idx).to(self.device)
        if self.text_table is not None:
            states = self.text_table.text_states(idx)
            out["text_states"] = {k: v.to(self.device) for k, v in states.items()}
        else:
            mask = self.tokens["attention_mask"][t]
            length = max(int(mask.sum(1).max()), 1)
            out["text"] = {k: v[t, :length].to(self.device) for k, v in self.tokens.items()}
        return out


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
