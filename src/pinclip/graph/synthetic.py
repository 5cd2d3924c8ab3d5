"""A seeded synthetic pin–board graph of any size (graph only, no images or text).

For tests and for benchmarking the graph code at 10^6+ pins without building a catalog:
each pin saves to ``min_boards..max_boards`` boards drawn by Zipf-like popularity, so
board sizes follow a power law (a few huge boards, a long tail of small ones).
"""

from __future__ import annotations

import numpy as np

from .bipartite import PinBoardGraph


def synthetic_edges(
    n_pins: int,
    *,
    seed: int = 0,
    min_boards: int = 3,
    max_boards: int = 5,
    mean_board_size: float = 20.0,
    zipf_exponent: float = 0.8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pin_ids, board_ids, edge_pin_idx, edge_board_idx) of a random power-law graph."""
    if n_pins < 1 or not 1 <= min_boards <= max_boards:
        raise ValueError("need n_pins >= 1 and 1 <= min_boards <= max_boards")
    rng = np.random.default_rng(seed)
    degree = rng.integers(min_boards, max_boards + 1, size=n_pins)
    n_edges = int(degree.sum())
    n_boards = max(1, int(round(n_edges / mean_board_size)))
    popularity = np.arange(1, n_boards + 1, dtype=np.float64) ** -zipf_exponent
    popularity = rng.permutation(popularity / popularity.sum())
    edge_pins = np.repeat(np.arange(n_pins, dtype=np.int64), degree)
    edge_boards = rng.choice(n_boards, size=n_edges, p=popularity)
    pin_ids = np.char.add("p", np.arange(n_pins).astype(str))
    board_ids = np.char.add("b", np.arange(n_boards).astype(str))
    return pin_ids, board_ids, edge_pins, edge_boards


def synthetic_graph(n_pins: int, *, seed: int = 0, **shape: float) -> PinBoardGraph:
    """Random graph with ``min_boards..max_boards`` boards per pin and power-law board sizes.

    ``shape`` takes the keyword arguments of :func:`synthetic_edges`.
    """
    return PinBoardGraph.from_indices(*synthetic_edges(n_pins, seed=seed, **shape))
