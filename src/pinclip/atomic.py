"""Atomic writes: readers and crashes see the old file (or folder) or the new one, never half.

One guarantee for every write in pinclip: the new content is written to a hidden temp
path in the same directory, flushed and fsynced, renamed over the final name with
`os.replace`, and the directory is fsynced so the rename itself survives a power loss.
A failure at any point removes the temp path and leaves the previous version in place.

Folders are swapped in one atomic exchange where the OS has one (Linux `renameat2`
with `RENAME_EXCHANGE`): readers see the old folder or the new one, never none. Elsewhere
(or on a filesystem without it) the swap is two renames (old → `.name.old-*`, new → name),
so a reader can miss the folder for that instant, and `restore_dir` brings back the old
folder if a kill fell between the two renames. Either way a kill never leaves a
half-written folder at `name`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_dir",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "restore_dir",
    "write_with",
]


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so renames inside it are durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """`with atomic_open(p, "w") as f: ...` — `p` appears complete on success, untouched on error."""
    if "r" in mode or "a" in mode or "+" in mode:
        raise ValueError(f"atomic_open is for writing a whole new file, not mode {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically and durably."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically and durably."""
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(folder)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False if the
    OS or filesystem cannot, leaving both untouched."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without it (musl before 1.2.?, old glibc)
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """`with atomic_dir(out) as tmp: write files into tmp` — then tmp replaces `out` whole.

    The old folder is kept until the new one is in place, then removed; on error the temp
    folder is removed and `out` is untouched. Readers see the old or the new folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    restore_dir(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if path.exists() and _exchange(tmp, path):
            old = tmp  # the exchange left the previous folder at the temp name
        else:
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def restore_dir(path: str | Path) -> None:
    """After a kill between a folder swap's two renames, put the old folder back; drop temps."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not path.exists() and olds:
        os.replace(olds.pop(), path)
    for stale in olds:
        shutil.rmtree(stale, ignore_errors=True)


def write_with(path: str | Path, writer: Callable[[IO], Any], mode: str = "wb") -> Path:
    """Atomically write `path` by calling `writer(file_object)` (for pyarrow, torch.save, ...)."""
    with atomic_open(path, mode) as fh:
        writer(fh)
    return Path(path)
