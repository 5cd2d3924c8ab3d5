"""Training checkpoints: atomic writes, keep-last-K, and everything needed to resume exactly.

A checkpoint is written to a temporary file in the same directory, flushed to disk and
renamed over its final name, so a kill or a full disk at any moment leaves either the
old checkpoint or the new one, never half of one. `latest` is whatever the newest
complete `step-*.pt` is: there is no pointer file to get out of sync.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

_STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically (temp file + fsync + rename); the old file survives errors."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_save_pretrained(model: Any, directory: str | Path) -> Path:
    """`model.save_pretrained` into a fresh folder, then swap it in: a kill mid-save never
    leaves a half-written model where `directory` was (at worst the previous one survives
    as `directory.old`, and the new one as a hidden temp folder)."""
    directory = Path(directory)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    model.save_pretrained(tmp)
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step checkpoints, oldest first (temp files are ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _STEP_FILE.match(p.name))


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write `step-XXXXXXXX.pt` atomically, then prune all but the newest `keep_last`."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}.pt"
    atomic_torch_save(state, path)
    for old in list_checkpoints(run_dir)[: -max(keep_last, 1)]:
        old.unlink(missing_ok=True)
    for stale in folder.glob(".step-*.tmp"):  # left by a run killed mid-write
        stale.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The newest readable checkpoint, or None. An unreadable file is skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - a corrupt file must not stop a resume
            print(f"warning: skipping unreadable checkpoint {path}: {err}")
    return None
