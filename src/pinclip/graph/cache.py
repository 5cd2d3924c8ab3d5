"""On-disk cache of neighbor lists, keyed by a hash of the graph and the parameters.

Computing importance neighbors for millions of pins takes minutes; the training loop, the
evaluator and the CLI all ask for the same lists, so the first caller computes and saves
them and every later caller memory-maps the saved copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .bipartite import PinBoardGraph
from .neighbors import NeighborLists

log = logging.getLogger(__name__)
_IDS_PER_CHUNK = 1 << 16  # ids hashed as Python strings at a time (bounded transient memory)


def graph_fingerprint(graph: PinBoardGraph) -> str:
    """sha256 of the graph's ids and CSR structure (any edge change changes it)."""
    h = hashlib.sha256()
    h.update(np.asarray(graph.pin_board.shape, dtype=np.int64).tobytes())
    for ids in (graph.pin_ids, graph.board_ids):
        for start in range(0, len(ids), _IDS_PER_CHUNK):  # same digest as all at once
            chunk = np.asarray(ids[start : start + _IDS_PER_CHUNK], dtype=object)
            h.update(pd.util.hash_array(chunk).tobytes())
    h.update(np.asarray(graph.pin_board.indptr, dtype=np.int64).tobytes())
    h.update(np.asarray(graph.pin_board.indices, dtype=np.int64).tobytes())
    return h.hexdigest()


def cache_key(graph: PinBoardGraph, params: dict) -> str:
    """Short hex key for (graph, params); params must be JSON-serialisable."""
    payload = graph_fingerprint(graph) + json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class NeighborCache:
    """A directory of saved :class:`NeighborLists`, one sub-directory per key."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path_for(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key}"

    def get_or_compute(
        self,
        kind: str,
        graph: PinBoardGraph,
        params: dict,
        compute: Callable[[], NeighborLists],
        *,
        mmap: bool = True,
    ) -> NeighborLists:
        """Load the lists for (graph, params) if saved, else compute, save and load them."""
        path = self.path_for(kind, cache_key(graph, params))
        if path.exists():
            self.hits += 1
            log.info("neighbor cache hit: %s", path)
        else:
            self.misses += 1
            log.info("neighbor cache miss: computing %s", path)
            compute().save(path)
        return NeighborLists.load(path, mmap=mmap)
