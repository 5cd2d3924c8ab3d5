"""pinclip.graph: the pin–board graph, co-board and random-walk neighbors, pin splits, and a
run's catalog split (`load_split`), shared by training and evaluation."""

from .bipartite import PinBoardGraph
from .cache import NeighborCache, cache_key, graph_fingerprint
from .catalog_split import (
    CatalogSplit,
    CatalogSplitConfig,
    board_titles,
    curated_boards,
    load_split,
)
from .neighbors import NeighborLists
from .random_walk import RandomWalkConfig, compute_random_walk_neighbors, random_walk_neighbors
from .samplers import DEFAULT_ALPHA, CoBoardSampler, board_weights
from .splits import SPLIT_NAMES, Split, split_boards, split_pins
from .synthetic import synthetic_edges, synthetic_graph

__all__ = [
    "DEFAULT_ALPHA",
    "SPLIT_NAMES",
    "CatalogSplit",
    "CatalogSplitConfig",
    "CoBoardSampler",
    "NeighborCache",
    "NeighborLists",
    "PinBoardGraph",
    "RandomWalkConfig",
    "Split",
    "board_titles",
    "board_weights",
    "cache_key",
    "compute_random_walk_neighbors",
    "curated_boards",
    "graph_fingerprint",
    "load_split",
    "random_walk_neighbors",
    "split_boards",
    "split_pins",
    "synthetic_edges",
    "synthetic_graph",
]
