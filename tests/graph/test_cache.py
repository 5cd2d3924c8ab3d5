import numpy as np
import pytest

from pinclip.graph import (
    NeighborCache,
    NeighborLists,
    RandomWalkConfig,
    cache_key,
    random_walk_neighbors,
)

WALK = RandomWalkConfig(top_k=6, n_walks=8, walk_length=3)
KW = dict(seed=0)


def test_second_call_hits_the_cache_and_is_memory_mapped(random_graph, tmp_path):
    cache = NeighborCache(tmp_path)
    first = random_walk_neighbors(random_graph, WALK, cache=cache, **KW)
    second = random_walk_neighbors(random_graph, WALK, cache=cache, **KW)
    assert (cache.misses, cache.hits) == (1, 1)
    assert isinstance(second.indices, np.memmap) and isinstance(second.indptr, np.memmap)
    for f in ("indptr", "indices", "counts"):
        assert np.array_equal(getattr(first, f), getattr(second, f))
    assert second.params["top_k"] == 6
    assert len(list(tmp_path.iterdir())) == 1


def test_cache_misses_when_parameters_or_graph_change(random_graph, tmp_path):
    cache = NeighborCache(tmp_path)
    random_walk_neighbors(random_graph, WALK, cache=cache, **KW)
    random_walk_neighbors(
        random_graph, RandomWalkConfig(top_k=7, n_walks=8, walk_length=3), cache=cache
    )
    random_walk_neighbors(random_graph, WALK, cache=cache, seed=1)
    keep = np.ones(random_graph.n_pins, dtype=bool)
    keep[0] = False
    random_walk_neighbors(random_graph.restrict(keep), WALK, cache=cache, **KW)
    assert (cache.misses, cache.hits) == (4, 0)
    random_walk_neighbors(random_graph, WALK, cache=str(tmp_path), **KW)  # a path works too
    assert len(list(tmp_path.iterdir())) == 4


def test_cache_key_depends_on_graph_and_params(hand_graph, random_graph):
    assert cache_key(hand_graph, {"a": 1}) == cache_key(hand_graph, {"a": 1})
    assert cache_key(hand_graph, {"a": 1}) != cache_key(hand_graph, {"a": 2})
    assert cache_key(hand_graph, {"a": 1}) != cache_key(random_graph, {"a": 1})


def test_save_load_round_trip_and_clear_error(tmp_path):
    nl = NeighborLists(
        np.array([0, 2, 2]), np.array([1, 0], np.int32), np.array([3, 1], np.int32), {"k": 1}
    )
    nl.save(tmp_path / "nl")
    nl.save(tmp_path / "nl")  # overwriting is atomic and allowed
    back = NeighborLists.load(tmp_path / "nl", mmap=False)
    assert back.indices.tolist() == [1, 0] and back.params == {"k": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["nl"]  # no temp dirs left behind
    with pytest.raises(FileNotFoundError, match="not a neighbor-list directory"):
        NeighborLists.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="inconsistent"):
        NeighborLists(np.array([0, 3]), np.array([1], np.int32), np.array([1], np.int32))
