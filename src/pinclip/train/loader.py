"""A run's micro-batches as a torch DataLoader: workers read, decode and tokenize ahead.

Item `s` of the dataset is micro-batch `s` of the run: the global batch of `BatchPlan`
(a pure function of the seed and `s`), this rank's share of it, and the model inputs of
those pins on the CPU. The sampler is the range of micro-batches still to run, so a
resumed run continues with exactly the batches an uninterrupted one would draw, whatever
the number of workers; each rank's loader yields only its own share (sharded by rank).

With trainable towers, worker processes decode and transform images and tokenize text
while the main process trains (`pin_memory` on CUDA, `prefetch` batches per worker);
with every tower's features in the store a batch is a few memory-mapped reads and the
main process reads them itself (`workers=0`), as it does on the CPU, unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pinclip.memory import bound_heap_growth
from pinclip.model.inputs import PinInputs

from .data import BatchPlan, TrainingData, anchor_boards, rank_slice


@dataclass
class MicroBatch:
    """One micro-batch of this rank: global anchors/neighbors and this rank's inputs."""

    index: int  # micro-batch number of the run (step * accum + micro)
    anchors: np.ndarray  # every rank's anchors (the global batch)
    neighbors: np.ndarray  # every rank's neighbors (-1: none)
    mine: np.ndarray  # this rank's anchors
    my_neighbors: np.ndarray  # this rank's neighbors
    #: PinCLIP.forward kwargs of [mine, neighbor-or-self] (CPU); None: `step_loss` reads them
    inputs: dict[str, Any] | None
    #: every rank's anchors' sampled positive boards (-1: none; None: no board term); the
    #: forward kwargs of this rank's boards are in `inputs` (board_text[_states])
    boards: np.ndarray | None = None

    @classmethod
    def unloaded(
        cls,
        index: int,
        anchors: np.ndarray,
        neighbors: np.ndarray,
        boards: np.ndarray | None = None,
    ) -> MicroBatch:
        """A one-process micro-batch without inputs: `step_loss` reads them (benchmarks)."""
        return cls(index, anchors, neighbors, anchors, neighbors, None, boards)

    def pin_memory(self) -> MicroBatch:
        """What the DataLoader's pin-memory thread calls (CUDA runs): page-locked inputs."""
        from torch.utils.data._utils.pin_memory import pin_memory

        return dataclasses.replace(self, inputs=pin_memory(self.inputs))


class _MicroBatches(Dataset):
    def __init__(
        self,
        plan: BatchPlan,
        data: TrainingData,
        inputs: PinInputs,
        rank: int,
        world: int,
        with_neighbors: bool,
        with_boards: bool = False,
    ) -> None:
        self.plan, self.data, self.inputs = plan, data, inputs
        self.rank, self.world, self.with_neighbors = rank, world, with_neighbors
        self.with_boards = with_boards

    def __getitem__(self, index: int) -> MicroBatch:
        anchors, neighbors = self.plan.global_batch(index, self.data)
        mine = rank_slice(anchors, self.rank, self.world)
        my_neighbors = rank_slice(neighbors, self.rank, self.world)
        pins = mine
        if self.with_neighbors:
            pins = np.concatenate([mine, np.where(my_neighbors >= 0, my_neighbors, mine)])
        inputs = self.inputs.cpu_batch(pins)
        boards = None
        if self.with_boards:  # a pure function of (seed, micro-batch), like the anchors
            boards = anchor_boards(self.plan, self.data, anchors, index)
            mine_boards = rank_slice(boards, self.rank, self.world)
            inputs |= self.inputs.cpu_board_batch(np.maximum(mine_boards, 0))
        return MicroBatch(index, anchors, neighbors, mine, my_neighbors, inputs, boards)


def _collate(item: MicroBatch) -> MicroBatch:
    return item  # one item is already one micro-batch


def default_workers(inputs: PinInputs) -> int:
    """Decoding processes when an accelerator trains (up to 4); 0 when every input is stored
    (memory-mapped reads) or on the CPU, where workers would take the cores the step uses."""
    if inputs.all_stored or inputs.device.type == "cpu":
        return 0
    return min(4, os.cpu_count() or 1)


def micro_batches(
    plan: BatchPlan,
    data: TrainingData,
    inputs: PinInputs,
    *,
    start: int,
    stop: int,
    rank: int = 0,
    world: int = 1,
    with_neighbors: bool = True,
    with_boards: bool = False,
    workers: int = 0,
    prefetch: int = 2,
) -> Iterator[MicroBatch]:
    """Micro-batches `start … stop-1` of this rank, produced `prefetch` ahead per worker."""
    loader = DataLoader(
        _MicroBatches(plan, data, inputs, rank, world, with_neighbors, with_boards),
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=inputs.device.type == "cuda",
        prefetch_factor=prefetch if workers else None,
        # spawn: forking a process whose torch threads already run can deadlock them
        multiprocessing_context="spawn" if workers else None,
        worker_init_fn=partial(_worker_init, data.graph.n_pins) if workers else None,
        # its own generator: starting the loader must not draw from the global torch RNG,
        # which a resumed run has just restored (dropout masks would shift by one draw)
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)


def _worker_init(n_pins: int, _: int) -> None:
    bound_heap_growth(n_pins)
    torch.set_num_threads(1)  # workers decode; the main process keeps the cores for compute
