"""Which torch device to run inference on: `auto` picks the best one torch sees.

Used by embedding (`pinclip embed`), serving and evaluation alike, so `--device` means
the same everywhere and a missing GPU is one clear error instead of a CUDA traceback.
"""

from __future__ import annotations

import torch

from pinclip.errors import PinclipError

__all__ = ["DEVICES", "resolve_device"]

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str = "auto") -> str:
    """`auto` is the best device torch sees (cuda, then mps, then cpu); others are checked."""
    kind = device.split(":")[0]
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise PinclipError(
            f"--device {device}: torch sees no CUDA device; use --device cpu (or auto)"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise PinclipError(f"--device {device}: torch sees no MPS device; use --device cpu")
    if kind not in ("cpu", "cuda", "mps"):
        raise PinclipError(f"unknown device {device!r}; use {DEVICES}")
    return device
