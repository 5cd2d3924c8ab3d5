"""From a catalog on disk to training batches: graph, split, neighbor sampler, batch plan.

`pinclip.graph.load_split` is the part evaluation shares (catalog, graph, the run's split,
pin texts, held-out boards); `load_training_data` adds the neighbor sampler and the loss's
per-pin arrays. Every random choice of the data pipeline is a pure function of (seed, epoch,
step), so a checkpoint needs no sampler state, only the step number: a resumed run draws
the same anchors and neighbors as an uninterrupted one, on any number of ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from rich.console import Console

from pinclip.errors import ConfigError
from pinclip.graph import (
    CatalogSplit,
    CoBoardSampler,
    NeighborLists,
    PinBoardGraph,
    load_split,
    random_walk_neighbors,
)

from .config import DataConfig, TrainConfig

HARD_WALK_TOP_K = 128  # most-visited pins kept per seed when drawing hard negatives


@dataclass
class TrainingData(CatalogSplit):
    """The split plus what training draws batches with: neighbor sampler, loss arrays."""

    sampler: object  # CoBoardSampler or NeighborLists: .sample(pins, rng) -> idx or -1
    dup_ids: np.ndarray  # equal ids: the same content (skin-tone variants), never negatives
    log_q: np.ndarray  # log popularity of each pin as a sampled neighbor (logQ correction)
    has_text: np.ndarray  # False for image-only pins: no image-text term for their rows
    #: pins × boards: the training graph's edges to boards not held out (board-tower positives)
    board_edges: sp.csr_matrix
    board_log_q: np.ndarray  # log probability of each board as a sampled positive (logQ)

    def sample_boards(self, pins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A positive board for each pin, uniform over its `board_edges` boards; -1: none."""
        pb = self.board_edges
        pins = np.asarray(pins, dtype=np.int64)
        start = pb.indptr[pins].astype(np.int64)
        degree = pb.indptr[pins + 1].astype(np.int64) - start
        pick = np.minimum((rng.random(len(pins)) * degree).astype(np.int64), degree - 1)
        boards = pb.indices[np.where(degree > 0, start + pick, 0)].astype(np.int64)
        return np.where(degree > 0, boards, -1)


def load_training_data(
    cfg: DataConfig, *, run_dir: Path | None = None, console: Console | None = None
) -> TrainingData:
    """`load_split`, then the neighbor sampler on the training graph and the loss arrays."""
    base = load_split(cfg, run_dir=run_dir, console=console)
    train_graph = base.split.train_graph
    if cfg.sampler == "coboard":
        sampler = CoBoardSampler(train_graph, seed=cfg.split_seed)
    elif cfg.sampler == "random_walk":
        sampler = random_walk_neighbors(
            train_graph,
            cfg.random_walk,
            seed=cfg.split_seed,
            cache=Path(cfg.cache_dir) / "neighbors",
        )
    else:
        raise ConfigError(f"data.sampler={cfg.sampler!r}: use 'coboard' or 'random_walk'")
    log_q = np.log(_neighbor_probability(sampler, train_graph) + 1e-12).astype(np.float32)
    pins = base.catalog.pins
    if "base_pin_id" in pins:  # e.g. skin-tone variants of one emoji
        dup_ids = pins["base_pin_id"].fillna(pins["pin_id"]).astype(str)
        dup_ids = dup_ids.astype("category").cat.codes.to_numpy(np.int64)
    else:
        dup_ids = np.arange(base.n_pins, dtype=np.int64)
    has_text = base.catalog.has_text()
    board_edges = train_graph.pin_board_without(base.held_out_boards)
    return TrainingData(
        **base.parts(),
        sampler=sampler,
        dup_ids=dup_ids,
        log_q=log_q,
        has_text=has_text,
        board_edges=board_edges,
        board_log_q=np.log(_board_probability(board_edges, base.split.warm) + 1e-12).astype(
            np.float32
        ),
    )


def _board_probability(edges: sp.csr_matrix, anchors: np.ndarray) -> np.ndarray:
    """How likely each board is a sampled positive: a uniform anchor, then one of its
    boards uniformly (`TrainingData.sample_boards`): the board term's logQ."""
    degree = np.diff(edges.indptr)[anchors]
    total = np.zeros(edges.shape[1])
    for start in range(0, len(anchors), 1 << 16):  # rows of 65,536 anchors at a time
        stop = start + (1 << 16)
        d = degree[start:stop]
        total += np.bincount(
            edges[anchors[start:stop]].indices,
            weights=np.repeat(1.0 / np.maximum(d, 1), d),
            minlength=edges.shape[1],
        )
    return total / max(int((degree > 0).sum()), 1)


def _neighbor_probability(sampler: object, graph: PinBoardGraph) -> np.ndarray:
    """How likely each pin is drawn as a neighbor: the logQ correction's Q."""
    if isinstance(sampler, CoBoardSampler):
        return sampler.neighbor_probability()
    counts = np.asarray(sampler.counts, dtype=np.float64)
    lengths = np.diff(np.asarray(sampler.indptr))
    row_total = np.repeat(
        np.add.reduceat(counts, sampler.indptr[:-1][lengths > 0]), lengths[lengths > 0]
    )
    return (
        np.bincount(np.asarray(sampler.indices), weights=counts / row_total, minlength=graph.n_pins)
        / graph.n_pins
    )


@dataclass
class BatchPlan:
    """Which anchors and neighbors make global step `step`, and this rank's share of them."""

    anchors: np.ndarray  # warm pin indices that are anchors, in epoch order
    batch_size: int  # global batch
    seed: int
    #: hard pins per seed anchor (`data.hard_negatives`); 0: a plain random permutation
    hard_per_seed: int = 0
    #: random-walk neighbors of every pin on the training graph, where hard pins come from
    walks: NeighborLists | None = None

    @property
    def steps_per_epoch(self) -> int:
        return max(len(self.anchors) // self.batch_size, 1)

    @cached_property
    def _is_anchor(self) -> np.ndarray:
        """bool over the walks' pin indices: an O(1) membership test in the per-step path."""
        assert self.walks is not None
        mask = np.zeros(self.walks.n_pins, dtype=bool)
        mask[self.anchors] = True
        return mask

    def global_batch(self, step: int, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        """(anchor idx, neighbor idx or -1) for a step: a pure function of (seed, step)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(self.anchors)
        if self.hard_per_seed:
            seeds_per_step = max(self.batch_size // (1 + self.hard_per_seed), 1)
            seeds = order[pos * seeds_per_step : (pos + 1) * seeds_per_step]
            anchors = self._with_hard_pins(seeds, data, np.random.default_rng([self.seed, step, 4]))
        else:
            anchors = order[pos * self.batch_size : (pos + 1) * self.batch_size]
        neighbors = data.sampler.sample(anchors, np.random.default_rng([self.seed, step, 1]))
        return anchors, np.asarray(neighbors, dtype=np.int64)

    def _with_hard_pins(
        self, seeds: np.ndarray, data: TrainingData, rng: np.random.Generator
    ) -> np.ndarray:
        """Seeds, then up to `hard_per_seed` hard pins of each (PinSage's hard negatives: pins
        its random walks reach that share no training board with it, so the loss keeps them
        as negatives), then random warm pins up to the batch size."""
        assert self.walks is not None
        graph = data.split.train_graph
        chosen = dict.fromkeys(int(s) for s in seeds)
        for s in seeds:
            reached, _ = self.walks.neighbors(int(s))
            reached = reached[self._is_anchor[reached]]
            hard = reached[~graph.co_board_mask(np.array([s]), reached)[0]]
            for p in rng.permutation(hard)[: self.hard_per_seed]:
                if len(chosen) < self.batch_size:
                    chosen.setdefault(int(p))
        return _filled(np.fromiter(chosen, dtype=np.int64), self.anchors, self.batch_size, rng)


def _filled(
    chosen: np.ndarray, pool: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """`chosen`, then distinct random pins of `pool` not in it, up to `size` pins."""
    rest = pool[~np.isin(pool, chosen)]
    fill = rng.choice(rest, min(size - len(chosen), len(rest)), replace=False)
    return np.concatenate([chosen, fill.astype(np.int64)])


@dataclass
class BoardBatchPlan:
    """Board-aware batches: P = batch_size // k boards × k of their warm pins per step.

    Pins that share a board are then in the same batch, so the neighbor terms need no second
    forward (`pinclip_loss(neighbors_in_batch=True)`). A board is drawn with probability
    ∝ kind weight × (warm pins)^size_power (curated boards weigh `curated_weight`, user boards
    1); boards with fewer than 2 warm pins cannot hold a positive and are never drawn. Slots a
    small or overlapping board leaves free are filled with random warm pins. A pure function
    of (seed, step), like `BatchPlan`, so resume and DDP stay exact.
    """

    anchors: np.ndarray  # warm pin indices
    batch_size: int
    seed: int
    board_pins: list[np.ndarray]  # warm pins of each drawable board
    board_p: np.ndarray  # draw probability of each drawable board
    k: int = 4

    @classmethod
    def from_data(
        cls,
        data: TrainingData,
        *,
        batch_size: int,
        seed: int,
        k: int,
        curated_weight: float,
        size_power: float,
    ) -> BoardBatchPlan:
        if k < 2:
            raise ConfigError(f"data.board_k={k}: a board needs at least 2 pins in the batch")
        graph = data.split.train_graph
        kind = data.catalog.boards.set_index("board_id").get("kind")
        curated = (
            (kind.reindex(graph.board_ids) == "curated").to_numpy()
            if kind is not None
            else np.zeros(graph.n_boards, dtype=bool)
        )
        pins = [graph.pins_of(b) for b in range(graph.n_boards)]
        sizes = np.array([len(p) for p in pins], dtype=np.float64)
        weight = (
            np.where(curated, curated_weight, 1.0) * np.where(sizes >= 2, sizes, 0) ** size_power
        )
        weight[sizes < 2] = 0
        if weight.sum() <= 0:
            raise ConfigError(
                "data.batch=boards: no board has 2 warm pins (or data.curated_weight=0 leaves "
                "none); use data.batch=pairs"
            )
        keep = np.flatnonzero(weight > 0)
        return cls(
            data.split.warm,
            batch_size,
            seed,
            [pins[b] for b in keep],
            weight[keep] / weight[keep].sum(),
            k,
        )

    @property
    def steps_per_epoch(self) -> int:
        return max(len(self.anchors) // self.batch_size, 1)

    def global_batch(self, step: int, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        """(anchor idx, all -1: the neighbors are the batch itself) for a step."""
        rng = np.random.default_rng([self.seed, step, 2])
        n_boards = min(max(self.batch_size // self.k, 1), len(self.board_pins))
        boards = rng.choice(len(self.board_pins), n_boards, replace=False, p=self.board_p)
        chosen: list[int] = []
        seen: set[int] = set()
        for b in boards:
            pins = self.board_pins[b]
            for p in rng.choice(pins, min(self.k, len(pins)), replace=False):
                if int(p) not in seen and len(chosen) < self.batch_size:
                    seen.add(int(p))
                    chosen.append(int(p))
        anchors = _filled(np.asarray(chosen, dtype=np.int64), self.anchors, self.batch_size, rng)
        return anchors, np.full(len(anchors), -1, dtype=np.int64)


def batch_plan(cfg: TrainConfig, data: TrainingData) -> BatchPlan | BoardBatchPlan:
    """The batch plan `cfg.data.batch` names (its keys were checked when `cfg` was made)."""
    if cfg.data.batch == "pairs":
        walks = None
        if cfg.data.hard_negatives:  # deeper walks than the sampler's: reach past board-mates
            walks = random_walk_neighbors(
                data.split.train_graph,
                replace(cfg.data.random_walk, top_k=HARD_WALK_TOP_K),
                seed=cfg.data.split_seed,
                cache=Path(cfg.data.cache_dir) / "neighbors",
            )
        return BatchPlan(
            anchors=data.split.warm,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            hard_per_seed=cfg.data.hard_negatives,
            walks=walks,
        )
    if cfg.data.batch == "boards":
        return BoardBatchPlan.from_data(
            data,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            k=cfg.data.board_k,
            curated_weight=cfg.data.curated_weight,
            size_power=cfg.data.board_size_power,
        )
    raise ConfigError(f"data.batch={cfg.data.batch!r}: use 'pairs' or 'boards'")


def anchor_boards(
    plan: BatchPlan | BoardBatchPlan, data: TrainingData, anchors: np.ndarray, index: int
) -> np.ndarray:
    """The board-tower positive of each anchor of micro-batch `index` (-1: none): one of its
    boards in `data.board_edges`, a pure function of (seed, index) so resume stays exact."""
    return data.sample_boards(anchors, np.random.default_rng([plan.seed, index, 3]))


def rank_slice(x: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's contiguous share of a global batch (the distributed sampler)."""
    per = len(x) // world
    return x[rank * per : (rank + 1) * per]
