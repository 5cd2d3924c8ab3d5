"""Shared graphs for the graph tests: a hand-made one with known structure, a random one."""

from __future__ import annotations

import numpy as np
import pytest

from pinclip.graph import PinBoardGraph, synthetic_graph

# board -> pins. Pin 7 has no board; pin 8 is alone on its board; pin 2 also sits alone on
# board "solo2" (a board that must never be chosen as a co-board step).
HAND_BOARDS = {
    "b0": [0, 1, 2],
    "b1": [0, 3],
    "b2": [1, 3, 4, 5],
    "b3": [5, 6],
    "solo2": [2],
    "solo8": [8],
}
HAND_PINS = 9


def _hand_graph() -> PinBoardGraph:
    pin_ids = np.array([f"pin{i}" for i in range(HAND_PINS)])
    board_ids = np.array(list(HAND_BOARDS))
    edge_pins = [f"pin{p}" for pins in HAND_BOARDS.values() for p in pins]
    edge_boards = [b for b, pins in HAND_BOARDS.items() for _ in pins]
    return PinBoardGraph.from_edges(pin_ids, board_ids, np.array(edge_pins), np.array(edge_boards))


@pytest.fixture
def hand_graph() -> PinBoardGraph:
    return _hand_graph()


@pytest.fixture(scope="session")
def random_graph() -> PinBoardGraph:
    return synthetic_graph(3000, seed=7, min_boards=1, max_boards=4, mean_board_size=6)


def _brute_co_board(graph: PinBoardGraph) -> list[set[int]]:
    """Co-board neighbor sets computed the slow obvious way, from the edge list."""
    boards_of = [set(graph.boards_of(p).tolist()) for p in range(graph.n_pins)]
    pins_of: dict[int, set[int]] = {}
    for p, boards in enumerate(boards_of):
        for b in boards:
            pins_of.setdefault(b, set()).add(p)
    return [set().union(*(pins_of[b] for b in boards_of[p])) - {p} for p in range(graph.n_pins)]


def _exact_transition(graph: PinBoardGraph, alpha: float) -> np.ndarray:
    """Dense pin→pin matrix of one co-board step, built from its definition."""
    n = graph.n_pins
    step = np.zeros((n, n))
    for p in range(n):
        boards = [b for b in graph.boards_of(p) if len(graph.pins_of(b)) >= 2]
        weights = np.array([(len(graph.pins_of(b)) - 1) ** -alpha for b in boards])
        for b, w in zip(boards, weights, strict=True):
            others = [q for q in graph.pins_of(b) if q != p]
            for q in others:
                step[p, q] += w / weights.sum() / len(others)
    return step


@pytest.fixture(scope="session")
def brute_co_board():
    return _brute_co_board


@pytest.fixture(scope="session")
def exact_transition():
    return _exact_transition
