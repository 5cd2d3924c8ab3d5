"""Precomputed neighbor lists (CSR: ``indptr``, ``indices``, ``counts``), stored on disk.

Stored as a directory of plain ``.npy`` files rather than one ``.npz``: a zip archive cannot
be memory-mapped, and for millions of pins the lists should be paged in on demand, not
read into every data-loader worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pinclip.atomic import atomic_dir
from pinclip.errors import NotFoundError

_ARRAYS = ("indptr", "indices", "counts")
META_FILE = "meta.json"


@dataclass(eq=False)
class NeighborLists:
    """Neighbors of pin ``p``: ``indices[indptr[p]:indptr[p+1]]`` with importance ``counts``.

    Rows are sorted by decreasing count (ties by neighbor index), so the first entry is the
    most important neighbor.
    """

    indptr: np.ndarray  # int64 [n_pins + 1]
    indices: np.ndarray  # int32 [nnz] (int64 beyond 2**31 pins)
    counts: np.ndarray  # int32 [nnz], visit counts (importance weights)
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.counts) or self.indptr[-1] != len(self.indices):
            raise ValueError(
                f"inconsistent neighbor lists: indptr ends at {int(self.indptr[-1])}, "
                f"{len(self.indices)} indices, {len(self.counts)} counts"
            )
        self._cum: np.ndarray | None = None

    @property
    def n_pins(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def neighbors(self, pin: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbor indices, visit counts) of one pin, most important first."""
        lo, hi = int(self.indptr[pin]), int(self.indptr[pin + 1])
        return np.asarray(self.indices[lo:hi]), np.asarray(self.counts[lo:hi])

    def weights(self, pin: int) -> np.ndarray:
        """Counts of one pin normalised to sum to 1 (empty when it has no neighbors)."""
        _, counts = self.neighbors(pin)
        return counts / counts.sum() if counts.size else counts.astype(np.float64)

    def sample(self, pins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One neighbor per pin drawn ∝ its count (exact integer draw); -1 if it has none."""
        if self._cum is None:
            self._cum = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        pins = np.asarray(pins, dtype=np.int64)
        lo = self._cum[self.indptr[pins]]
        total = self._cum[self.indptr[pins + 1]] - lo
        ok = total > 0
        out = np.full(len(pins), -1, dtype=np.int64)
        u = lo[ok] + rng.integers(0, total[ok])
        slot = np.searchsorted(self._cum, u, side="right") - 1
        out[ok] = self.indices[slot]
        return out

    # ---- disk --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write atomically to directory ``path`` (``*.npy`` + ``meta.json``): readers see the
        previous lists or the new ones, never none and never half (`pinclip.atomic.atomic_dir`)."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
            (tmp / META_FILE).write_text(json.dumps(self.params, sort_keys=True, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> NeighborLists:
        """Read lists written by :meth:`save`; memory-mapped (read-only) by default."""
        path = Path(path)
        missing = [
            n for n in (*(f"{a}.npy" for a in _ARRAYS), META_FILE) if not (path / n).exists()
        ]
        if missing:
            raise NotFoundError(
                f"{path} is not a neighbor-list directory (missing {', '.join(missing)}); "
                "compute it again with random_walk_neighbors"
            )
        mode = "r" if mmap else None
        arrays = {a: np.load(path / f"{a}.npy", mmap_mode=mode) for a in _ARRAYS}
        params = json.loads((path / META_FILE).read_text())
        return cls(**arrays, params=params)
