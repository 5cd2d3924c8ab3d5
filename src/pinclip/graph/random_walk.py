"""PinSage-style importance neighbors: random walks with restart, top-K pins by visit count.

From every source pin, ``n_walks`` walkers take ``walk_length`` steps each. A step is one
co-board hop (pin → board, large boards down-weighted → another pin of that board, see
:mod:`pinclip.graph.samplers`); the pin reached is counted as a visit of the source (the
source itself is never counted). After each step a walker jumps back to its source with
probability ``restart_prob``, which keeps the walk local. The ``top_k`` most visited pins
are the source's neighbors and their visit counts its importance weights.

All walkers of a chunk of sources move together as numpy arrays, one step at a time, and
visits are counted by sorting integer keys, so time and memory are linear in
``n_pins * n_walks * walk_length`` (plus the graph), never in pins².
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pinclip.errors import ConfigError

from .bipartite import PinBoardGraph
from .cache import NeighborCache
from .neighbors import NeighborLists
from .samplers import DEFAULT_ALPHA, CoBoardSampler

ALGORITHM = "random_walk_v1"


@dataclass
class RandomWalkConfig:
    """The walk's parameters: their one name and one default (training's `data.random_walk`
    is this dataclass; the functions below take it whole)."""

    top_k: int = 32  # neighbors kept per pin, most visited first
    n_walks: int = 64  # walkers per source pin
    walk_length: int = 4  # co-board steps per walker
    restart_prob: float = 0.5  # chance a walker jumps back to its source after each step

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.n_walks < 1 or self.walk_length < 1:
            raise ConfigError(
                "random_walk: top_k, n_walks and walk_length must all be >= 1, got "
                f"{self.top_k}, {self.n_walks}, {self.walk_length}"
            )
        if not 0.0 <= self.restart_prob <= 1.0:
            raise ConfigError(
                f"random_walk.restart_prob must be in [0, 1], got {self.restart_prob}"
            )


_WORKER_SAMPLER: CoBoardSampler | None = None  # inherited by forked worker processes


def _init_worker(sampler: CoBoardSampler) -> None:
    global _WORKER_SAMPLER
    _WORKER_SAMPLER = sampler


def _walk_chunk(
    job: tuple[int, np.ndarray], *, seed: int, sampler: CoBoardSampler | None = None, **walk
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk ``i`` gets its own generator, so results do not depend on ``n_jobs``."""
    i, sources = job
    rng = np.random.default_rng([seed, i])
    sampler = sampler if sampler is not None else _WORKER_SAMPLER
    return _top_k_of_chunk(sampler, sources, rng=rng, **walk)


def _top_k_of_chunk(
    sampler: CoBoardSampler,
    sources: np.ndarray,
    *,
    top_k: int,
    n_walks: int,
    walk_length: int,
    restart_prob: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(list length per source, neighbors, counts) of the top-K visited pins, by source."""
    n_pins = sampler.graph.n_pins
    n_src, per_src = len(sources), n_walks * walk_length
    home = np.repeat(sources, n_walks)  # walker w belongs to source w // n_walks
    cur = home.copy()
    index_type = np.int32 if n_pins < 2**31 else np.int64  # halves the sort's memory traffic
    visits = np.empty((walk_length, len(home)), dtype=index_type)
    for step in range(walk_length):
        nxt = sampler.sample(cur, rng)
        visits[step] = np.where((nxt >= 0) & (nxt != home), nxt, -1)  # -1: not counted
        restart = (rng.random(len(home)) < restart_prob) | (nxt < 0)
        cur = np.where(restart, home, nxt)
    # one row per source holding all its visits; sorting rows groups equal pins together
    rows = np.sort(
        visits.reshape(walk_length, n_src, n_walks).transpose(1, 0, 2).reshape(n_src, per_src),
        axis=1,
    )
    is_start = np.ones_like(rows, dtype=bool)
    is_start[:, 1:] = rows[:, 1:] != rows[:, :-1]
    first = np.flatnonzero(is_start)
    counts = np.diff(first, append=rows.size)
    pins, src_local = rows.ravel()[first].astype(np.int64), first // per_src
    counted = pins >= 0
    pins, src_local, counts = pins[counted], src_local[counted], counts[counted]
    # order by (source, count desc, pin asc) with one integer sort key
    key = (src_local * (per_src + 1) + (per_src - counts)) * n_pins + pins
    key.sort()
    src_local, rest = np.divmod(key, (per_src + 1) * n_pins)
    inv_count, pins = np.divmod(rest, n_pins)
    group_start = np.flatnonzero(np.diff(src_local, prepend=-1))
    rank = np.arange(len(key)) - np.repeat(group_start, np.diff(group_start, append=len(key)))
    keep = rank < top_k
    lengths = np.bincount(src_local[keep], minlength=n_src)
    return lengths, pins[keep].astype(index_type), (per_src - inv_count[keep]).astype(np.int32)


def _map_chunks(task: partial, jobs: list, sampler: CoBoardSampler, n_jobs: int) -> Iterator:
    """Results of ``task`` over ``jobs`` in order: here, or in ``n_jobs`` forked workers."""
    if n_jobs <= 1:
        yield from map(partial(task, sampler=sampler), jobs)
        return
    ctx = multiprocessing.get_context("fork")  # workers inherit the sampler without pickling
    with ProcessPoolExecutor(
        n_jobs, mp_context=ctx, initializer=_init_worker, initargs=(sampler,)
    ) as pool:
        yield from pool.map(task, jobs)


def compute_random_walk_neighbors(
    graph: PinBoardGraph,
    walk: RandomWalkConfig | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    chunk_steps: int = 1 << 21,
    n_jobs: int = 1,
    progress: bool = False,
) -> NeighborLists:
    """Run the walks for every pin of ``graph`` (no cache); see the module docstring.

    ``walk`` defaults to ``RandomWalkConfig()``. ``chunk_steps`` bounds the walker-steps simulated at once (memory ≈ 60 bytes each, per
    job). ``n_jobs > 1`` walks chunks in forked worker processes (POSIX only); the result is
    identical for any ``n_jobs``.
    """
    walk = walk or RandomWalkConfig()
    params = dict(
        algorithm=ALGORITHM, **asdict(walk), alpha=alpha, seed=seed, chunk_steps=chunk_steps
    )
    sampler = CoBoardSampler(graph, alpha=alpha, seed=seed)
    # sources with no co-board neighbor get an empty list without walking
    sources_all = np.flatnonzero(sampler.has_neighbor(np.arange(graph.n_pins)))
    per_chunk = max(1, chunk_steps // (walk.n_walks * walk.walk_length))
    jobs = [
        (i, sources_all[s : s + per_chunk])
        for i, s in enumerate(range(0, len(sources_all), per_chunk))
    ]
    lengths = np.zeros(graph.n_pins, dtype=np.int64)
    nbr_parts, count_parts = [np.empty(0, np.int32)], [np.empty(0, np.int32)]
    task = partial(_walk_chunk, seed=seed, **asdict(walk))
    results = _map_chunks(task, jobs, sampler, n_jobs)
    if progress:
        from rich.progress import track

        results = track(results, description="random walks", total=len(jobs))
    for (_, chunk), (chunk_lengths, nbr, cnt) in zip(jobs, results, strict=True):
        lengths[chunk] = chunk_lengths
        nbr_parts.append(nbr)
        count_parts.append(cnt)
    # chunks hold ascending sources, so concatenating keeps rows in pin order
    indptr = np.zeros(graph.n_pins + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    nbr, cnt = np.concatenate(nbr_parts), np.concatenate(count_parts)
    del nbr_parts, count_parts
    return NeighborLists(indptr, nbr, cnt, params=params)


def random_walk_neighbors(
    graph: PinBoardGraph,
    walk: RandomWalkConfig | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    chunk_steps: int = 1 << 21,
    n_jobs: int = 1,
    cache: NeighborCache | str | Path | None = None,
    progress: bool = False,
) -> NeighborLists:
    """Importance neighbors of every pin, loaded from ``cache`` when already computed.

    Pass the *training* graph (``split.train_graph``) so held-out pins never leak in.
    With a cache the result is memory-mapped from disk.
    """
    walk = walk or RandomWalkConfig()
    kwargs = dict(alpha=alpha, seed=seed, chunk_steps=chunk_steps)
    if cache is None:
        return compute_random_walk_neighbors(
            graph, walk, n_jobs=n_jobs, progress=progress, **kwargs
        )
    if not isinstance(cache, NeighborCache):
        cache = NeighborCache(cache)
    params = dict(algorithm=ALGORITHM, **asdict(walk), **kwargs)
    return cache.get_or_compute(
        "rw",
        graph,
        params,
        lambda: compute_random_walk_neighbors(
            graph, walk, n_jobs=n_jobs, progress=progress, **kwargs
        ),
    )
