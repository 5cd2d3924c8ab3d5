"""pinclip.graph: the pin–board graph, co-board and random-walk neighbors, pin splits."""

from .bipartite import PinBoardGraph
from .cache import NeighborCache, cache_key, graph_fingerprint
from .neighbors import NeighborLists
from .random_walk import RandomWalkConfig, compute_random_walk_neighbors, random_walk_neighbors
from .samplers import DEFAULT_ALPHA, CoBoardSampler, board_weights
from .splits import SPLIT_NAMES, Split, split_boards, split_pins
from .synthetic import synthetic_edges, synthetic_graph

__all__ = [
    "DEFAULT_ALPHA",
    "SPLIT_NAMES",
    "CoBoardSampler",
    "NeighborCache",
    "NeighborLists",
    "PinBoardGraph",
    "RandomWalkConfig",
    "Split",
    "board_weights",
    "cache_key",
    "compute_random_walk_neighbors",
    "graph_fingerprint",
    "random_walk_neighbors",
    "split_boards",
    "split_pins",
    "synthetic_edges",
    "synthetic_graph",
]
