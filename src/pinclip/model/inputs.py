"""Model inputs for any set of pins: stored frozen features, or images and tokens on the fly.

With a frozen stem and text encoder (the CPU default), their outputs for every pin are
computed once into the on-disk `FeatureStore` (shared by runs, resumes and DDP ranks) and
read back by row from memory-mapped segments, so a training step runs only the trainable
parts and the process's memory does not grow with the catalog. Unfrozen parts get decoded
images (eval transform, so a batch is a pure function of its pins) and tokens, made per
batch (in `train.loader`'s worker processes during training). Training, evaluation's PinCLIP
embedder and validation all read pins through `PinInputs`, so it sits with the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.console import Console

from .config import is_vlm_spec
from .feature_store import FeatureStore, FeatureTable
from .model import PinCLIP

if TYPE_CHECKING:
    from pinclip.graph import CatalogSplit


@dataclass
class PinInputs:
    image_table: FeatureTable | None  # frozen stem maps of every pin, by pin index
    text_table: FeatureTable | None  # frozen encoder states of every pin, by pin index
    images: Sequence[str] | None  # image files (ImagePaths), decoded per batch when the stem trains
    texts: (
        Sequence[str] | None
    )  # texts (TextColumn), tokenized per batch when the text encoder trains
    transform: Any  # the eval transform (when the stem trains)
    tokenizer: Any  # the model's tokenizer (when the text encoder trains)
    max_length: int
    device: torch.device
    board_table: FeatureTable | None = None  # frozen encoder states of every board title
    board_texts: list[str] | None = None  # board titles, tokenized per batch (text encoder trains)

    @classmethod
    def prepare(
        cls,
        model: PinCLIP,
        data: CatalogSplit,
        *,
        cache_dir: Path,
        device: torch.device,
        console: Console,
        feature_dtype: str = "fp16",
        text_compute: str = "fp32",
        workers: int = 1,
        boards: bool = False,
    ) -> PinInputs:
        """Build (or reuse) the stored features of every pin of `data` for `model` (and of
        every board title with `boards`: the board tower's inputs, in the same store)."""
        cfg = model.config
        # a VLM backbone reads every pin's image and text in each step (its adapters train
        # through all of it): nothing to store, like unfrozen towers
        stored = not is_vlm_spec(cfg.backbone)
        store = (
            FeatureStore(
                Path(cache_dir) / "features", model, dtype=feature_dtype, text_compute=text_compute
            )
            if stored
            else None
        )
        image_table = text_table = images = texts = None
        if cfg.freeze_stem and stored:
            paths = data.catalog.image_paths()  # resolved per access, not a list per pin
            image_table = store.build("images", paths, workers=workers, console=console)
        else:
            images = data.catalog.image_paths(as_str=True)
        if cfg.freeze_text_encoder and stored:
            text_table = store.build("texts", data.texts, workers=workers, console=console)
        else:
            texts = data.texts  # Arrow-backed (TextColumn), indexed per batch
        board_table = board_texts = None
        if boards and cfg.freeze_text_encoder and stored:
            board_table = store.build("texts", data.board_titles, workers=workers, console=console)
        elif boards:
            board_texts = data.board_titles
        return cls(
            image_table,
            text_table,
            images,
            texts,
            model.image_transform(train=False),
            model.tokenizer,
            cfg.text.max_length,
            device,
            board_table,
            board_texts,
        )

    @property
    def all_stored(self) -> bool:
        """True when every input is read from the store (nothing to decode or tokenize)."""
        return self.images is None and self.texts is None

    def cpu_batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Keyword arguments of `PinCLIP.forward` for pins `idx`, on the CPU."""
        out: dict[str, Any] = {}
        if self.image_table is not None:
            out["image_features"] = self.image_table.image_features(idx)
        else:
            from pinclip.data.images import load_image

            out["images"] = torch.stack([self.transform(load_image(self.images[i])) for i in idx])
        if self.text_table is not None:
            out["text_states"] = self.text_table.text_states(idx)
        else:
            out["text"] = self._tokens([self.texts[i] for i in idx])
        return out

    def cpu_board_batch(self, boards: np.ndarray) -> dict[str, Any]:
        """`PinCLIP.forward`'s board-title kwargs for boards `boards`, on the CPU."""
        if self.board_table is not None:
            return {"board_text_states": self.board_table.text_states(boards)}
        if self.board_texts is None:
            raise ValueError("PinInputs.prepare(..., boards=True) was not called")
        return {"board_text": self._tokens([self.board_texts[i] for i in boards])}

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A `cpu_batch` on the device; on CUDA through pinned memory, non-blocking."""

        def move(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            if isinstance(x, list):
                return [move(v) for v in x]
            if self.device.type == "cuda":
                return (x if x.is_pinned() else x.pin_memory()).to(self.device, non_blocking=True)
            return x.to(self.device)

        return move(batch)

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Keyword arguments of `PinCLIP.forward` for pins `idx`, on the device."""
        return self.to_device(self.cpu_batch(idx))

    def __getstate__(self) -> dict[str, Any]:  # to loader workers: never the device
        return {**self.__dict__, "device": torch.device("cpu")}
