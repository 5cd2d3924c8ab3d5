"""On-disk cache of what the frozen parts compute, so CPU training runs only the rest.

A frozen stem maps an image to the same stride-16/32 feature maps every epoch, and a frozen
text encoder maps a text to the same token states: compute them once, store one small
safetensors file per item under `root/{images,texts}/ab/<sha256>.safetensors`, and feed them
back with `model(image_features=..., text_states=...)`.

Keys are content hashes: sha256 of the image bytes (or text) together with a namespace that
covers the frozen weights and the preprocessing (eval transform / tokenizer and max length).
Changing the stem, the transform or the tokenizer therefore never returns stale features.
Cached images use the eval transform (no augmentation): that is the price of caching.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from rich.progress import track
from safetensors.torch import load_file, save
from torch import nn

from pinclip.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from .model import PinCLIP

ImageInput = bytes | str | Path | Image.Image


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over a module's state (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _image_bytes(image: ImageInput) -> bytes:
    if isinstance(image, bytes):
        return image
    if isinstance(image, Image.Image):
        return f"{image.mode}:{image.size}:".encode() + image.tobytes()
    return Path(image).read_bytes()


def _decode(image: ImageInput, data: bytes) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as e:  # Pillow raises several types for bad files
        where = image if isinstance(image, str | Path) else f"<{len(data)} bytes>"
        raise ValueError(f"cannot decode image {where}: {e}") from e


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class FeatureCache:
    """Frozen-stem feature maps and frozen text-encoder states on disk, keyed by content hash."""

    def __init__(
        self, root: str | Path, model: PinCLIP, *, dtype: torch.dtype = torch.float32
    ) -> None:
        self.root = Path(root)
        self.model = model
        self.dtype = dtype
        transform = repr(model.image_transform(train=False))
        stem = module_fingerprint(model.image.stem)
        encoder = module_fingerprint(model.text.encoder)
        tok = model.tokenizer
        tok_id = f"{type(tok).__name__}:{len(tok)}:{model.config.text.max_length}"
        self._image_ns = hashlib.sha256(f"{stem}|{transform}|{dtype}".encode()).hexdigest()
        self._text_ns = hashlib.sha256(f"{encoder}|{tok_id}|{dtype}".encode()).hexdigest()

    # ----- keys and paths -----------------------------------------------------------------
    def image_key(self, image: ImageInput) -> str:
        return hashlib.sha256(self._image_ns.encode() + _image_bytes(image)).hexdigest()

    def text_key(self, text: str) -> str:
        return hashlib.sha256(self._text_ns.encode() + text.encode("utf-8")).hexdigest()

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def _write(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        data = save({k: v.to(self.dtype).contiguous() for k, v in tensors.items()})
        atomic_write_bytes(self._path(kind, key), data)  # a crash never leaves half an entry

    def __contains__(self, kind_key: tuple[str, str]) -> bool:
        return self._path(*kind_key).is_file()

    # ----- precompute -----------------------------------------------------------------------
    @torch.no_grad()
    def precompute_images(
        self, images: Sequence[ImageInput], *, batch_size: int = 64, progress: bool = True
    ) -> list[str]:
        """Run the frozen stem over images not cached yet; return every image's key."""
        if not self.model.config.freeze_stem:
            raise ValueError(
                "stem features can only be cached for a frozen stem (freeze_stem=True)"
            )
        datas = [_image_bytes(im) for im in images]
        keys = [hashlib.sha256(self._image_ns.encode() + d).hexdigest() for d in datas]
        todo = [i for i, k in enumerate(keys) if ("images", k) not in self]
        transform = self.model.image_transform(train=False)
        was_training = self.model.training
        self.model.eval()
        batches = list(_batches(todo, batch_size))
        for batch in track(batches, description="stem features", disable=not progress):
            x = torch.stack([transform(_decode(images[i], datas[i])) for i in batch])
            maps = self.model.stem_features(x)
            for j, i in enumerate(batch):
                self._write("images", keys[i], {f"map{n}": m[j] for n, m in enumerate(maps)})
        self.model.train(was_training)
        return keys

    @torch.no_grad()
    def precompute_texts(
        self, texts: Sequence[str], *, batch_size: int = 256, progress: bool = True
    ) -> list[str]:
        """Run the frozen text encoder over texts not cached yet; return every text's key."""
        if not self.model.config.freeze_text_encoder:
            raise ValueError(
                "text states can only be cached for a frozen encoder (freeze_text_encoder=True)"
            )
        keys = [self.text_key(t) for t in texts]
        todo = [i for i, k in enumerate(keys) if ("texts", k) not in self]
        was_training = self.model.training
        self.model.eval()
        batches = list(_batches(todo, batch_size))
        for batch in track(batches, description="text states", disable=not progress):
            states = self.model.text_encoder_states(self.model.tokenize([texts[i] for i in batch]))
            lengths = states["attention_mask"].sum(1).tolist()
            for j, i in enumerate(batch):
                hidden = states["hidden_states"][j, : int(lengths[j])]
                self._write("texts", keys[i], {"hidden_states": hidden})
        self.model.train(was_training)
        return keys

    # ----- load -------------------------------------------------------------------------------
    def _read(self, kind: str, key: str) -> dict[str, torch.Tensor]:
        path = self._path(kind, key)
        if not path.is_file():
            raise KeyError(
                f"{kind[:-1]} {key} is not in the feature cache {self.root}: precompute it"
            )
        return load_file(str(path))

    def load_image_features(self, keys: Sequence[str]) -> list[torch.Tensor]:
        """Stacked stem maps for `forward(image_features=...)`."""
        items = [self._read("images", k) for k in keys]
        dtype = self.model.logit_scale.dtype
        return [
            torch.stack([it[f"map{n}"] for it in items]).to(dtype) for n in range(len(items[0]))
        ]

    def load_text_states(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded encoder states and attention mask for `forward(text_states=...)`."""
        hidden = [self._read("texts", k)["hidden_states"] for k in keys]
        length = max(h.shape[0] for h in hidden)
        dtype = self.model.logit_scale.dtype
        out = torch.zeros(len(hidden), length, hidden[0].shape[1], dtype=dtype)
        mask = torch.zeros(len(hidden), length, dtype=torch.long)
        for i, h in enumerate(hidden):
            out[i, : h.shape[0]] = h
            mask[i, : h.shape[0]] = 1
        return {"hidden_states": out, "attention_mask": mask}
