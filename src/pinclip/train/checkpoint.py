"""Training checkpoints that cannot run code: safetensors weights + a weights-only torch file.

A checkpoint is a folder `checkpoints/step-XXXXXXXX/`:

    model.safetensors   the model's state dict (any safetensors reader opens it)
    state.pt            everything else: optimizer, scheduler, RNG, step, config...

`state.pt` is read with `torch.load(weights_only=True)`, which only rebuilds tensors,
numbers, strings and containers, so a checkpoint from someone else cannot execute code on
load: a file that asks for anything else is refused with `UnsafeCheckpointError`. Extra
non-tensor state (CUDA RNG, a GradScaler...) goes in `state.pt` as is; numpy arrays (the
numpy RNG state) are stored as tensors and come back as numpy arrays.

Each folder is written through `pinclip.atomic.atomic_dir`: a kill or a full disk at any
moment leaves either no `step-X` folder or a complete one. `latest` is whatever the newest
complete folder is: there is no pointer file to get out of sync.
"""

from __future__ import annotations

import logging
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pinclip.atomic import atomic_dir
from pinclip.errors import PinclipError

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_NDARRAY = "__ndarray__"


class UnsafeCheckpointError(PinclipError):
    """A checkpoint's `state.pt` asks the unpickler for code, not just data: it is refused."""


def atomic_save_pretrained(
    model: Any, directory: str | Path, state_dict: dict[str, Any] | None = None
) -> Path:
    """`model.save_pretrained` into a fresh folder, then swap it in whole (`atomic_dir`);
    `state_dict`: the weights to write instead of the model's own (FSDP's gathered state)."""
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
    return Path(directory)


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint folder was written at (from its name)."""
    match = _STEP_DIR.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a step-XXXXXXXX checkpoint folder")
    return int(match.group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step checkpoints, oldest first (temp folders of a killed write are ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _STEP_DIR.match(p.name) and p.is_dir())


def _to_storable(obj: Any) -> Any:
    """numpy arrays -> tagged tensors, recursively, so `weights_only=True` can read them."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("a checkpoint cannot hold numpy object arrays (they need pickle)")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, dict):
        return {k: _to_storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_storable(v) for v in obj)
    return obj


def _from_storable(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].numpy()
        return {k: _from_storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_from_storable(v) for v in obj)
    return obj


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write `step-XXXXXXXX/` atomically, then prune all but the newest `keep_last`.

    `state["model"]` is a state dict of tensors (-> model.safetensors); the other keys may hold
    tensors, numpy arrays, numbers, strings, None and lists/tuples/dicts of them (-> state.pt).
    """
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}"
    rest = {k: v for k, v in state.items() if k != "model"}
    weights = {k: v.detach().contiguous().cpu() for k, v in state["model"].items()}
    with atomic_dir(path) as tmp:
        save_file(weights, str(tmp / MODEL_FILE), metadata={"step": str(step)})
        with open(tmp / STATE_FILE, "wb") as fh:
            torch.save(_to_storable(rest), fh)
    for old in list_checkpoints(run_dir)[: -max(keep_last, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".step-*.tmp"):  # left by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """One checkpoint folder as the dict `save_checkpoint` was given; never runs code.

    Raises UnsafeCheckpointError when `state.pt` needs anything beyond plain data.
    """
    path = Path(path)
    state_file = path / STATE_FILE
    try:
        rest = torch.load(state_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise
        found = re.search(r"GLOBAL (\S+)", str(err))
        raise UnsafeCheckpointError(
            f"{state_file} was refused: it asks to load "
            f"{found.group(1) if found else 'a Python object'}, not just tensors and plain data, "
            "so it could run code. pinclip never writes such files; only resume from "
            "checkpoints you made, or delete this one to fall back to an older checkpoint"
        ) from None
    state = _from_storable(rest)
    state["model"] = load_file(str(path / MODEL_FILE))
    return state


def load_latest_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The newest readable checkpoint, or None. A corrupt one is skipped with a warning; an
    unsafe one (code in state.pt) stops the resume with UnsafeCheckpointError."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(path)
        except UnsafeCheckpointError:
            raise
        except Exception as err:  # noqa: BLE001 - a corrupt file must not stop a resume
            log.warning("skipping unreadable checkpoint %s: %s", path, err)
    return None


__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "UnsafeCheckpointError",
    "atomic_save_pretrained",
    "checkpoint_dir",
    "checkpoint_step",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "save_checkpoint",
]
