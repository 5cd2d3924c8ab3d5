"""Write-ahead log of pins added through the API: durable before the 201, replayed on start.

A record is one JSON line holding the pin's fields and its embedding; its image file is
written and fsynced first, then the line is appended and fsynced. A torn last line (a kill
mid-write, never acknowledged) is cut off when the writer opens the log again, so the next
record starts on a line of its own. One process writes a store at a time: an exclusive
`flock` on `<store>/.lock` (released by the kernel even after `kill -9`) makes a second
writer on the same directory fail at start instead of interleaving two logs. Any number of
read-only replicas may follow the log (`read_only=True`, `follow()`): they take no lock
and read only complete lines, so they pick up each added pin once it is durable.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinclip.atomic import fsync_dir
from pinclip.errors import PinclipError

LOG_FILE = "pins.jsonl"
IMAGES_DIR = "images"
LOCK_FILE = ".lock"


class StoreInUseError(PinclipError):
    """Another process holds the store's lock: two writers would corrupt the log and index."""


@dataclass
class AddedPin:
    pin_id: str
    title: str
    text: str
    image: str  # file name under the store's images/ directory
    vector: np.ndarray  # pin_emb, float32
    description: str = ""  # shown on the pin's page (`text` is what the model read)


def _lock_exclusively(path: Path) -> int:
    """Hold an exclusive, non-blocking flock on `path` for this process's lifetime."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreInUseError(
            f"pin store {path.parent} is in use by another server (pid {owner}); stop that "
            "server first, or give this one its own index directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _cut_torn_tail(log: Path, window: int = 1 << 20) -> None:
    """Drop an unterminated last line (a write killed mid-way, never acknowledged)."""
    size = log.stat().st_size if log.exists() else 0
    if size == 0:
        return
    with open(log, "rb+") as f:
        start = max(0, size - window)  # a record is ~1-2 KB: the tail window holds its start
        f.seek(start)
        tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        if cut < 0 and start > 0:  # a torn line longer than the window: look at it all
            f.seek(0)
            tail, start = f.read(), 0
            cut = tail.rfind(b"\n")
        f.truncate(start + cut + 1)
        f.flush()
        os.fsync(f.fileno())


class PinStore:
    """Append-only log + image files under one directory (default: <index>/added).

    `read_only=True` opens it as a replica: no lock, no writes, `follow()` for new records.
    """

    _lock: int | None = None

    def __init__(self, root: str | Path, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.log = self.root / LOG_FILE
        self.read_only = read_only
        self._offset = 0  # bytes of the log already replayed or followed
        if read_only:
            return
        (self.root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._lock = _lock_exclusively(self.root / LOCK_FILE)
        _cut_torn_tail(self.log)

    def close(self) -> None:
        """Release the lock (also released when the process exits, however it exits)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self) -> None:
        self.close()

    def save_image(self, name: str, data: bytes) -> None:
        path = self.root / IMAGES_DIR / name
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(path.parent)

    def append(self, pin: AddedPin) -> None:
        """Durable on return: the 201 may be sent."""
        record = {
            "pin_id": pin.pin_id,
            "title": pin.title,
            "text": pin.text,
            "image": pin.image,
            "description": pin.description,
            "vector": base64.b64encode(np.asarray(pin.vector, np.float32).tobytes()).decode(),
        }
        new = not self.log.exists()
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(self.root)

    def replay(self) -> Iterator[AddedPin]:
        """Every record so far (then `follow()` continues from where this stopped)."""
        self._offset = 0
        return self.follow()

    def follow(self) -> Iterator[AddedPin]:
        """Records appended since the last replay/follow; a line still being written waits."""
        if not self.log.exists():
            return
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # being written (or torn): read it once it is complete
                self._offset += len(line)
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn record of a killed write: it was never acknowledged
                vector = np.frombuffer(base64.b64decode(r["vector"]), dtype=np.float32)
                yield AddedPin(
                    r["pin_id"], r["title"], r["text"], r["image"], vector, r.get("description", "")
                )

    def image_path(self, name: str) -> Path:
        from pinclip.data.images import resolve_image_path

        return resolve_image_path(self.root / IMAGES_DIR, name)
