import numpy as np
import pytest

from pinclip.errors import ConfigError
from pinclip.graph import NeighborLists, RandomWalkConfig, compute_random_walk_neighbors


def exact_visits(
    step: np.ndarray, source: int, *, walk_length: int, restart_prob: float
) -> np.ndarray:
    """Expected visits per walker to each pin: y_t = x_{t-1} P, x_t = (1-r) y_t + r e_s."""
    home = np.eye(len(step))[source]
    x, visits = home, np.zeros(len(step))
    for _ in range(walk_length):
        y = x @ step
        visits += y
        x = (1 - restart_prob) * y + restart_prob * home
    visits[source] = 0.0  # the source is never its own neighbor
    return visits


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_top_k_matches_exact_visit_probabilities(hand_graph, exact_transition, alpha):
    n_walks, walk_length, restart_prob = 4000, 6, 0.3
    nl = compute_random_walk_neighbors(
        hand_graph,
        RandomWalkConfig(
            top_k=hand_graph.n_pins,
            n_walks=n_walks,
            walk_length=walk_length,
            restart_prob=restart_prob,
        ),
        alpha=alpha,
        seed=0,
    )
    step = exact_transition(hand_graph, alpha)
    for source in range(7):
        expected = exact_visits(step, source, walk_length=walk_length, restart_prob=restart_prob)
        idx, counts = nl.neighbors(source)
        got = np.zeros(hand_graph.n_pins)
        got[idx] = counts / (n_walks * walk_length)
        np.testing.assert_allclose(got, expected / walk_length, atol=0.01)
        # the sampled ranking agrees with the exact one wherever exact values are well apart
        exact_at = expected[idx] / walk_length
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):
                assert exact_at[i] >= exact_at[j] - 0.01
        # top-2 by count are the two most probable pins
        if (np.sort(expected)[::-1][1] - np.sort(expected)[::-1][2]) / walk_length > 0.02:
            assert set(idx[:2]) == set(np.argsort(-expected)[:2])


def test_lists_are_sorted_truncated_and_never_hold_self(random_graph, brute_co_board):
    nl = compute_random_walk_neighbors(
        random_graph, RandomWalkConfig(top_k=5, n_walks=16, walk_length=3), seed=1
    )
    truth = brute_co_board(random_graph)
    assert nl.n_pins == random_graph.n_pins
    assert nl.lengths.max() == 5
    for p in range(random_graph.n_pins):
        idx, counts = nl.neighbors(p)
        assert p not in idx
        assert (np.diff(counts) <= 0).all() and (counts > 0).all()
        assert (idx.size > 0) == bool(truth[p])  # empty exactly for pins with no co-board pin
    # one-step walks (no chance to go further) only reach true co-board neighbors
    one_hop = compute_random_walk_neighbors(
        random_graph, RandomWalkConfig(top_k=50, n_walks=8, walk_length=1), seed=1
    )
    for p in range(0, random_graph.n_pins, 7):
        assert set(one_hop.neighbors(p)[0].tolist()) <= truth[p]


def test_deterministic_per_seed(random_graph):
    walk = RandomWalkConfig(top_k=8, n_walks=8, walk_length=3)
    a = compute_random_walk_neighbors(random_graph, walk, seed=3)
    b = compute_random_walk_neighbors(random_graph, walk, seed=3)
    c = compute_random_walk_neighbors(random_graph, walk, seed=4)
    assert all((getattr(a, f) == getattr(b, f)).all() for f in ("indptr", "indices", "counts"))
    assert not np.array_equal(a.counts, c.counts) or not np.array_equal(a.indices, c.indices)


def test_chunking_keeps_every_pin(random_graph):
    walk = RandomWalkConfig(top_k=4, n_walks=4, walk_length=2)
    small = compute_random_walk_neighbors(random_graph, walk, chunk_steps=64)
    big = compute_random_walk_neighbors(random_graph, walk)
    assert ((small.lengths > 0) == (big.lengths > 0)).all()


def test_neighbor_lists_sample_proportional_to_counts():
    nl = NeighborLists(
        np.array([0, 3, 3, 4]), np.array([5, 6, 7, 1], np.int32), np.array([6, 3, 1, 2], np.int32)
    )
    got = nl.sample(np.zeros(30_000, dtype=int), np.random.default_rng(0))
    freq = np.array([(got == k).mean() for k in (5, 6, 7)])
    np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.01)
    assert nl.sample(np.array([1, 2, 1]), np.random.default_rng(0)).tolist() == [-1, 1, -1]
    np.testing.assert_allclose(nl.weights(0), [0.6, 0.3, 0.1])


def test_bad_parameters_are_rejected_when_the_config_is_made():
    with pytest.raises(ConfigError, match="restart_prob"):
        RandomWalkConfig(restart_prob=1.5)
    with pytest.raises(ConfigError, match="top_k"):
        RandomWalkConfig(top_k=0)


def test_worker_processes_give_identical_lists(random_graph):
    walk = RandomWalkConfig(top_k=6, n_walks=8, walk_length=3)
    serial = compute_random_walk_neighbors(random_graph, walk, seed=2, chunk_steps=4096)
    parallel = compute_random_walk_neighbors(random_graph, walk, seed=2, chunk_steps=4096, n_jobs=2)
    for f in ("indptr", "indices", "counts"):
        assert np.array_equal(getattr(serial, f), getattr(parallel, f))
