"""Which torch device to run on: one resolver for training, embedding, serving and evaluation.

`device` means the same everywhere (`auto`, `cpu`, `cuda`, `cuda:N`, `mps`), and a device
that is not there is one clear `ConfigError` instead of a CUDA traceback mid-run.
"""

from __future__ import annotations

import torch

from pinclip.errors import ConfigError

__all__ = ["DEVICES", "resolve_device"]

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device: str = "auto", local_rank: int | None = None) -> str:
    """The checked device name. `auto` is the best device torch sees (cuda, then mps, then
    cpu). `local_rank` (under torchrun) turns `auto`/`cuda` into that rank's GPU `cuda:N`."""
    kind, _, index = device.partition(":")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda" if local_rank is None else f"cuda:{local_rank}"
        return "mps" if _mps_available() and local_rank is None else "cpu"
    if kind == "cpu" and not index:
        return "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device}: no CUDA device is visible; use cpu (or auto)")
        if not index:
            return "cuda" if local_rank is None else f"cuda:{local_rank}"
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device}: {torch.cuda.device_count()} CUDA device(s) visible (cuda:0 …)"
            )
        return device
    if kind == "mps" and not index:
        if not _mps_available():
            raise ConfigError(
                f"device={device}: Apple's MPS backend is not available here; use cpu"
            )
        return "mps"
    raise ConfigError(f"unknown device={device!r}: use {DEVICES}")
