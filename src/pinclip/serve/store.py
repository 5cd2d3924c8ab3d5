"""Write-ahead log of pins added through the API: durable before the 201, replayed on start.

A record is one JSON line holding the pin's fields and its embedding; its image file is
written and fsynced first, then the line is appended and fsynced. A torn last line (a kill
mid-write, never acknowledged) is ignored on replay.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG_FILE = "pins.jsonl"
IMAGES_DIR = "images"


@dataclass
class AddedPin:
    pin_id: str
    title: str
    text: str
    image: str  # file name under the store's images/ directory
    vector: np.ndarray  # pin_emb, float32


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PinStore:
    """Append-only log + image files under one directory (default: <index>/added)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self.log = self.root / LOG_FILE

    def save_image(self, name: str, data: bytes) -> None:
        path = self.root / IMAGES_DIR / name
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(path.parent)

    def append(self, pin: AddedPin) -> None:
        """Durable on return: the 201 may be sent."""
        record = {
            "pin_id": pin.pin_id,
            "title": pin.title,
            "text": pin.text,
            "image": pin.image,
            "vector": base64.b64encode(np.asarray(pin.vector, np.float32).tobytes()).decode(),
        }
        new = not self.log.exists()
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if new:
            _fsync_dir(self.root)

    def replay(self) -> Iterator[AddedPin]:
        if not self.log.exists():
            return
        with open(self.log, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn tail of a killed write: it was never acknowledged
                vector = np.frombuffer(base64.b64decode(r["vector"]), dtype=np.float32)
                yield AddedPin(r["pin_id"], r["title"], r["text"], r["image"], vector)

    def image_path(self, name: str) -> Path:
        from pinclip.data.images import resolve_image_path

        return resolve_image_path(self.root / IMAGES_DIR, name)
