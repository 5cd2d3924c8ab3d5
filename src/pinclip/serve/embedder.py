"""Embedders: turn images and texts into PinCLIP embeddings with PyTorch or ONNX Runtime.

Both backends share preprocessing (the model's eval transform, the model's tokenizer) and
return float32 numpy arrays, so the catalog job, the index and the HTTP service do not care
which one runs. Pins always go through the fusion with their text (empty when a pin has
none), exactly as training embeds them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from pinclip.errors import PinclipError, require
from pinclip.model import PinCLIP, PinCLIPConfig
from pinclip.model.devices import resolve_device
from pinclip.model.model import image_transform, model_tokenizer, text_from_backbone, text_mask
from pinclip.model.text_tower import tokenize

ONNX_MANIFEST = "export.json"
PARTS = ("image", "text", "fusion")


class Embedder(Protocol):
    config: PinCLIPConfig

    def preprocess(self, image: Image.Image) -> np.ndarray: ...
    def embed_images(self, pixels: np.ndarray) -> np.ndarray: ...
    def embed_texts(self, texts: list[str]) -> np.ndarray: ...
    def embed_pins(self, pixels: np.ndarray, texts: list[str]) -> dict[str, np.ndarray]: ...


class _Base:
    """Preprocessing shared by the backends."""

    def __init__(self, config: PinCLIPConfig, tokenizer: Any) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self._transform = image_transform(config)
        self.lock = threading.Lock()  # one forward at a time: sessions and modules are shared

    @property
    def dim(self) -> int:
        return int(self.config.embed_dim)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._transform(image.convert("RGB")).numpy()

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = tokenize(self.tokenizer, texts, self.config.text.max_length, return_tensors="np")
        return {k: v.astype(np.int64) for k, v in enc.items()}


class TorchEmbedder(_Base):
    """PyTorch eager inference of a saved PinCLIP model on a device (fp16 autocast on CUDA)."""

    def __init__(self, model: PinCLIP, device: str = "cpu") -> None:
        super().__init__(model.config, model.tokenizer)
        self.device = torch.device(resolve_device(device))
        self.model = model.eval().to(self.device)

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu") -> TorchEmbedder:
        return cls(PinCLIP.from_pretrained(model_dir), device)

    def _to(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    @torch.inference_mode()
    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        with self.lock, self._autocast():
            return self.model(images=self._to(pixels)).image_emb.float().cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tok = {k: self._to(v) for k, v in self.tokenize(texts).items()}
        with self.lock, self._autocast():
            return self.model(text=tok).text_emb.float().cpu().numpy()

    @torch.inference_mode()
    def embed_pins(self, pixels: np.ndarray, texts: list[str]) -> dict[str, np.ndarray]:
        tok = {k: self._to(v) for k, v in self.tokenize(texts).items()}
        with self.lock, self._autocast():
            out = self.model(images=self._to(pixels), text=tok)
        return {
            k: getattr(out, k).float().cpu().numpy() for k in ("image_emb", "text_emb", "pin_emb")
        }

    @torch.inference_mode()
    def embed_stored(
        self, image_features: list[torch.Tensor], text_states: dict[str, torch.Tensor]
    ) -> dict[str, np.ndarray]:
        """`embed_pins` from the frozen parts' stored outputs (a `FeatureTable`'s rows): only
        the trainable layers run."""
        move = lambda x: x.to(self.device, non_blocking=True)  # noqa: E731
        with self.lock, self._autocast():
            out = self.model(
                image_features=[move(x) for x in image_features],
                text_states={k: move(v) for k, v in text_states.items()},
            )
        return {
            k: getattr(out, k).float().cpu().numpy() for k in ("image_emb", "text_emb", "pin_emb")
        }


def fusion_length(config: PinCLIPConfig) -> int:
    """The fusion graph's text length: max_length tokens (+ a backbone's pooled state)."""
    return config.text.max_length + text_from_backbone(config)


def pad_text(states: np.ndarray, mask: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad text states and mask to `length` tokens: the fusion graph has a fixed sequence length
    (the exporter bakes it in); padded tokens are masked out, so the result is unchanged."""
    extra = length - states.shape[1]
    if extra <= 0:
        return states, mask
    return (
        np.pad(states, ((0, 0), (0, extra), (0, 0))),
        np.pad(mask, ((0, 0), (0, extra))),
    )


#: The fusion graph's inputs: both towers' tokens (mid fusion) and unit embeddings (late
#: fusion). A model with `fusion.late=False` ignores the embeddings, and the exporter may drop
#: unused inputs, so feeds are filtered by the graph's own input names.
FUSION_INPUTS = ("image_patches", "text_states", "text_mask", "image_emb", "text_emb")


def fusion_feeds(*arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Name the fusion graph's inputs, in `FUSION_INPUTS` order."""
    return dict(zip(FUSION_INPUTS, arrays, strict=True))


class OnnxEmbedder(_Base):
    """ONNX Runtime inference of the graphs `export_onnx` wrote (fp32 or int8 per part)."""

    def __init__(
        self, export_dir: str | Path, *, threads: int | None = None, device: str = "cpu"
    ) -> None:
        ort = require("onnxruntime", "export", "the onnx backend")

        export_dir = Path(export_dir)
        manifest_path = export_dir / ONNX_MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{manifest_path} not found: pass a directory written by `pinclip export`"
            )
        self.manifest = json.loads(manifest_path.read_text())
        config = PinCLIPConfig.from_dict(
            {
                k: v
                for k, v in json.loads((export_dir / "config.json").read_text()).items()
                if k != "format"
            }
        )
        super().__init__(config, model_tokenizer(config, export_dir))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.providers = onnx_providers(device)
        self.sessions = {
            part: ort.InferenceSession(
                str(export_dir / self.manifest["graphs"][part]), opts, providers=self.providers
            )
            for part in PARTS
        }

    def _image(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, patches = self.sessions["image"].run(None, {"pixels": pixels.astype(np.float32)})
        return emb, patches

    def _text(self, tok: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        emb, states = self.sessions["text"].run(None, tok)
        return emb, states

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        with self.lock:
            return self._image(pixels)[0]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tok = self.tokenize(texts)
        with self.lock:
            return self._text(tok)[0]

    def embed_pins(self, pixels: np.ndarray, texts: list[str]) -> dict[str, np.ndarray]:
        tok = self.tokenize(texts)
        with self.lock:
            image_emb, patches = self._image(pixels)
            text_emb, states = self._text(tok)
            states, mask = pad_text(
                states, text_mask(self.config, tok["attention_mask"]), fusion_length(self.config)
            )
            feeds = fusion_feeds(patches, states, mask, image_emb, text_emb)
            fusion = self.sessions["fusion"]
            (pin_emb,) = fusion.run(None, {i.name: feeds[i.name] for i in fusion.get_inputs()})
        return {"image_emb": image_emb, "text_emb": text_emb, "pin_emb": pin_emb}


def onnx_providers(device: str) -> list:
    """ONNX Runtime providers for `device`: CUDA first when asked and installed, else CPU."""
    import onnxruntime as ort

    kind, _, index = device.partition(":")
    if kind == "auto":
        kind = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    warnings.warn(
        f"--device {device}: this onnxruntime has no {kind.upper()} execution provider "
        f"(it has {ort.get_available_providers()}; install onnxruntime-gpu for CUDA); "
        "running ONNX on the CPU",
        RuntimeWarning,
        stacklevel=3,
    )
    return ["CPUExecutionProvider"]


def find_export(model_dir: str | Path) -> Path | None:
    """The ONNX export of a model: the directory itself, or its `onnx/` subdirectory."""
    model_dir = Path(model_dir)
    for candidate in (model_dir, model_dir / "onnx"):
        if (candidate / ONNX_MANIFEST).is_file():
            return candidate
    return None


def model_fingerprint(model_dir: str | Path) -> str | None:
    """The model's identity: a hash of its weights (a retrained or renamed copy differs or
    matches by content, not by path). An ONNX export carries its source model's fingerprint
    (export.json); None for an export written before it did."""
    model_dir = Path(model_dir)
    weights = model_dir / "model.safetensors"
    if weights.is_file():
        digest = hashlib.sha256()
        with open(weights, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()[:16]
    export = find_export(model_dir)
    if export is not None:
        return json.loads((export / ONNX_MANIFEST).read_text()).get("model_fingerprint")
    return None


BACKENDS = ("auto", "torch", "onnx")


def resolve_backend(model_dir: str | Path, backend: str = "auto", device: str = "cpu") -> str:
    """`auto`: ONNX Runtime when an export exists and the device is the CPU (its int8/fp32
    graphs are 3-5x eager there; BENCHMARKS.md §2), else PyTorch eager."""
    if backend not in BACKENDS:
        raise PinclipError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    import importlib.util

    export = find_export(model_dir)
    is_model = (Path(model_dir) / "model.safetensors").is_file()
    has_ort = importlib.util.find_spec("onnxruntime") is not None  # the 'export' extra
    if export is not None and (not is_model or (has_ort and device.split(":")[0] == "cpu")):
        return "onnx"
    return "torch"


def load_embedder(
    model_dir: str | Path,
    backend: str = "auto",
    *,
    device: str = "cpu",
    threads: int | None = None,
) -> Embedder:
    """`torch`: a save_pretrained directory; `onnx`: an export directory (or a model dir
    holding `onnx/`); `auto`: see `resolve_backend`. `device` as in `resolve_device`."""
    device = resolve_device(device)
    backend = resolve_backend(model_dir, backend, device)
    if backend == "torch":
        return TorchEmbedder.load(model_dir, device)
    export = find_export(model_dir)
    if export is None:
        raise PinclipError(
            f"{model_dir}: no {ONNX_MANIFEST} here or in {Path(model_dir) / 'onnx'}; write one "
            f"with `pinclip export {model_dir} {Path(model_dir) / 'onnx'} --int8`"
        )
    return OnnxEmbedder(export, threads=threads, device=device)
