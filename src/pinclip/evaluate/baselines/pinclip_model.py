"""A trained PinCLIP model (ours, or its λ = 0 ablation) behind the baseline interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from pinclip.errors import NotFoundError
from pinclip.evaluate.data import EvalData, find_run_dir
from pinclip.model import PinCLIP
from pinclip.model.devices import resolve_device
from pinclip.retrieval import embed_pins

from .base import BASELINES, Baseline, BaselineContext, Embedder, PinEmbeddings


def model_dir(path: str | Path, checkpoint: str = "best") -> Path:
    """A run dir's `checkpoint` model dir, or `path` itself when it already is a model dir."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    if (path / checkpoint / "config.json").is_file():
        return path / checkpoint
    raise NotFoundError(
        f"{path}: neither a model dir (config.json) nor a run dir with {checkpoint}/config.json"
    )


class PinCLIPEmbedder(Embedder):
    """`pin_emb` (image + text fused), `image_emb` and `text_emb` of a saved PinCLIP."""

    def __init__(
        self,
        path: str | Path,
        name: str | None = None,
        checkpoint: str = "best",
        console: Console | None = None,
        device: str = "cpu",
    ) -> None:
        self.path = model_dir(path, checkpoint)
        self.name = name or str(path)
        self.device = torch.device(resolve_device(device))
        self.model = PinCLIP.from_pretrained(self.path).eval().to(self.device)
        self.console = console or Console(quiet=True)
        self._pins: dict[int, PinEmbeddings] = {}

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        from pinclip.model.inputs import PinInputs

        key = id(data)
        if key not in self._pins:
            inputs = PinInputs.prepare(  # reads only the catalog and texts of `data`
                self.model,
                data,
                cache_dir=Path(data.config.cache_dir),
                feature_dtype=data.config.feature_dtype,
                text_compute=data.config.feature_text_compute,
                device=self.device,
                console=self.console,
            )
            emb = embed_pins(self.model, inputs, np.arange(data.n_pins))
            self._pins[key] = PinEmbeddings(emb["pin_emb"], emb["image_emb"], emb["text_emb"])
        return self._pins[key]

    @torch.no_grad()
    def embed_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        out = [
            self.model(text=self._on_device(self.model.tokenize(texts[i : i + batch_size])))
            .text_emb.float()
            .cpu()
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.model.config.embed_dim)

    def _on_device(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in tokens.items()}

    def trained_on(self) -> str | None:
        run = find_run_dir(self.path)
        return str(run) if run is not None and (run / "metrics.jsonl").is_file() else None


def _pinclip(context: BaselineContext, path: str, **options) -> PinCLIPEmbedder:
    """A PinCLIP run or model dir, run on the comparison's device."""
    return PinCLIPEmbedder(path, **({"device": context.device} | options))


BASELINES.add(
    "pinclip",
    Baseline(_pinclip, arg="RUN_OR_MODEL_DIR"),
    help="a PinCLIP run or model dir (a path alone says the same)",
)
