"""Seeded split of pins into warm (training), val and cold (both held out).

Val and cold pins lose all their edges in ``train_graph``: training never sees that they
sit on any board, so evaluating them measures cold start. Their edges stay in the full
graph as ground truth, which is why only pins sharing a board with another pin are
eligible to be held out (every held-out pin has at least one relevant pin). Where
possible every board keeps a warm pin, so no board vanishes from training: each board
"protects" one random pin, and protected pins are held out only when there are not
enough unprotected eligible pins.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pinclip.atomic import write_with
from pinclip.errors import ConfigError, InputError

from .bipartite import PinBoardGraph

SPLIT_NAMES = ("warm", "val", "cold")
WARM, VAL, COLD = 0, 1, 2
#: Fewest held-out pins behind a figure that means something: with fewer, one pin moves a
#: mean Recall@10 by over 3 points and its 95% CI spans much of [0, 1].
MIN_HELD_OUT = 30

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Split:
    """Sorted pin indices per part, and the graph with only warm pins' edges."""

    warm: np.ndarray
    val: np.ndarray
    cold: np.ndarray
    train_graph: PinBoardGraph
    params: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        """int8 [n_pins]: 0 warm, 1 val, 2 cold (see ``SPLIT_NAMES``)."""
        labels = np.zeros(self.train_graph.n_pins, dtype=np.int8)
        labels[self.val] = VAL
        labels[self.cold] = COLD
        return labels

    @classmethod
    def from_labels(
        cls, graph: PinBoardGraph, labels: np.ndarray, params: dict | None = None
    ) -> Split:
        """Rebuild a split of the *full* ``graph`` from per-pin labels."""
        labels = np.asarray(labels)
        if labels.shape != (graph.n_pins,):
            raise ValueError(f"need one split label per pin ({graph.n_pins}), got {labels.shape}")
        warm, val, cold = (np.flatnonzero(labels == k) for k in (WARM, VAL, COLD))
        return cls(warm, val, cold, graph.restrict(labels == WARM), dict(params or {}))

    def too_small(self) -> list[str]:
        """A warning per held-out part with fewer than `MIN_HELD_OUT` pins (none: [])."""
        return [
            f"only {len(pins)} {name} pins (< {MIN_HELD_OUT}): figures measured on them are "
            "noise; use a bigger catalog or raise data.cold_frac / data.val_frac"
            for name, pins in (("val", self.val), ("cold", self.cold))
            if 0 < len(pins) < MIN_HELD_OUT
        ]

    def save(self, path: str | Path) -> Path:
        """Write ``pin_id → split`` as parquet (params in the file's metadata)."""
        path = Path(path)
        names = np.asarray(SPLIT_NAMES)[self.labels]
        table = pa.table({"pin_id": pa.array(self.train_graph.pin_ids), "split": names})
        table = table.replace_schema_metadata({"pinclip.split": json.dumps(self.params)})
        return write_with(path, lambda f: pq.write_table(table, f))

    @classmethod
    def load(cls, path: str | Path, graph: PinBoardGraph) -> Split:
        """Read a saved split and apply it to the full ``graph`` (pins matched by id)."""
        path = Path(path)
        table = pq.read_table(path)
        for col in ("pin_id", "split"):
            if col not in table.column_names:
                raise InputError(f"{path}: missing column {col!r}; write splits with Split.save")
        ids = table.column("pin_id").to_numpy(zero_copy_only=False)
        names = table.column("split").to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isin(names, SPLIT_NAMES))
        if bad.size:
            row = int(bad[0])
            raise InputError(
                f"{path}: row {row}: split {str(names[row])!r} is not one of {SPLIT_NAMES}"
            )
        pos = pd.Index(graph.pin_ids).get_indexer(ids)
        if (pos < 0).any():
            row = int(np.flatnonzero(pos < 0)[0])
            raise InputError(f"{path}: row {row}: pin_id {str(ids[row])!r} is not in the graph")
        if len(np.unique(pos)) != graph.n_pins or len(pos) != graph.n_pins:
            raise InputError(
                f"{path}: lists {len(pos)} pins but the graph has {graph.n_pins}; "
                "a split must label every pin of the graph exactly once"
            )
        labels = np.empty(graph.n_pins, dtype=np.int8)
        labels[pos] = pd.Index(SPLIT_NAMES).get_indexer(names)
        meta = (table.schema.metadata or {}).get(b"pinclip.split", b"{}")
        return cls.from_labels(graph, labels, json.loads(meta))

    def __repr__(self) -> str:
        return f"Split(warm={len(self.warm)}, val={len(self.val)}, cold={len(self.cold)})"


def _protected_pins(graph: PinBoardGraph, priority: np.ndarray) -> np.ndarray:
    """bool [n_pins]: for every non-empty board, its pin with the lowest priority."""
    bp = graph.board_pin
    nonempty = graph.board_size > 0
    protected = np.zeros(graph.n_pins, dtype=bool)
    if bp.nnz == 0:
        return protected
    lowest = np.minimum.reduceat(priority[bp.indices], bp.indptr[:-1][nonempty])
    protected[np.argsort(priority)[lowest]] = True
    return protected


def split_pins(
    graph: PinBoardGraph, *, cold_frac: float = 0.1, val_frac: float = 0.05, seed: int = 0
) -> Split:
    """Hold out ``cold_frac`` and ``val_frac`` of all pins (see the module docstring)."""
    if cold_frac < 0 or val_frac < 0 or cold_frac + val_frac >= 1:
        raise ConfigError(
            f"need cold_frac, val_frac >= 0 with sum < 1, got {cold_frac} and {val_frac}"
        )
    n_cold = int(round(cold_frac * graph.n_pins))
    n_val = int(round(val_frac * graph.n_pins))
    eligible = np.flatnonzero(graph.has_co_board_neighbor())
    if n_cold + n_val > len(eligible):
        raise ConfigError(
            f"cannot hold out {n_cold} cold + {n_val} val pins: only {len(eligible)} of "
            f"{graph.n_pins} pins share a board with another pin; lower cold_frac/val_frac"
        )
    rng = np.random.default_rng(seed)
    priority = rng.permutation(graph.n_pins)
    protected = _protected_pins(graph, priority)
    # unprotected eligible pins first, each group in random (priority) order
    order = eligible[np.lexsort((priority[eligible], protected[eligible]))]
    held = order[: n_val + n_cold]
    labels = np.full(graph.n_pins, WARM, dtype=np.int8)
    labels[held[:n_val]] = VAL
    labels[held[n_val:]] = COLD
    params = dict(cold_frac=cold_frac, val_frac=val_frac, seed=seed)
    split = Split.from_labels(graph, labels, params)
    for warning in split.too_small():
        log.warning("split of %d pins: %s", graph.n_pins, warning)
    return split


def split_boards(
    graph: PinBoardGraph,
    *,
    frac: float = 0.1,
    seed: int = 0,
    curated: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted indices of the held-out boards: a seeded ``frac`` of the boards with a pin.

    Held-out boards are never a board-tower positive (or candidate) in training, so ranking
    pins for one of their titles measures a *new* board from its title alone. Their edges
    stay in every graph (a held-out board's warm pins still train the neighbor terms): only
    the board's own embedding is never fitted. Drawn per stratum (``curated`` boards and the
    rest separately, each at least one board when ``frac > 0`` and it has two), so both
    relevances of the report get queries.
    """
    if not 0 <= frac < 1:
        raise ConfigError(f"board hold-out fraction must be in [0, 1), got {frac}")
    if frac == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 1])  # its own stream: the pin split is unchanged
    kind = np.zeros(graph.n_boards, dtype=bool) if curated is None else np.asarray(curated, bool)
    if kind.shape != (graph.n_boards,):
        raise ValueError(f"curated must have one flag per board ({graph.n_boards})")
    order = rng.permutation(graph.n_boards)
    nonempty = graph.board_size[order] > 0
    held = []
    for stratum in (True, False):
        pool = order[nonempty & (kind[order] == stratum)]
        n = int(round(frac * len(pool)))
        held.append(pool[: max(n, 1) if len(pool) >= 2 else n])
    return np.sort(np.concatenate(held)).astype(np.int64)
