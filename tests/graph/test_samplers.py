import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinclip.graph import CoBoardSampler, PinBoardGraph, board_weights


def test_samples_are_true_co_board_neighbors_never_self(random_graph, brute_co_board):
    truth = brute_co_board(random_graph)
    sampler = CoBoardSampler(random_graph, seed=0)
    pins = np.tile(np.arange(random_graph.n_pins), 20)
    got = sampler.sample(pins, np.random.default_rng(3))
    for p, q in zip(pins.tolist(), got.tolist(), strict=True):
        if truth[p]:
            assert q in truth[p] and q != p
        else:
            assert q == -1
    # every pin that has a neighbor got one on every draw
    assert (got >= 0).sum() == 20 * sum(bool(t) for t in truth)


def test_isolated_and_singleton_board_pins_get_minus_one(hand_graph):
    got = CoBoardSampler(hand_graph).sample(np.array([7, 8, 7, 8]), np.random.default_rng(0))
    assert got.tolist() == [-1, -1, -1, -1]


def test_deterministic_from_the_rng(random_graph):
    sampler = CoBoardSampler(random_graph)
    pins = np.arange(random_graph.n_pins)
    a = sampler.sample(pins, np.random.default_rng(5))
    b = sampler.sample(pins, np.random.default_rng(5))
    c = sampler.sample(pins, np.random.default_rng(6))
    assert (a == b).all() and (a != c).any()
    # the sampler's own generator is seeded too
    assert (
        CoBoardSampler(random_graph, seed=1).sample(pins)
        == CoBoardSampler(random_graph, seed=1).sample(pins)
    ).all()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_one_step_distribution_matches_definition(hand_graph, exact_transition, alpha):
    step = exact_transition(hand_graph, alpha)
    sampler = CoBoardSampler(hand_graph, alpha=alpha)
    n = 40_000
    for p in (0, 1, 3, 5):
        got = sampler.sample(np.full(n, p), np.random.default_rng(p))
        freq = np.bincount(got, minlength=hand_graph.n_pins) / n
        np.testing.assert_allclose(freq, step[p], atol=0.01)


def test_large_boards_are_down_weighted():
    # pin 0 is on a 2-pin board and a 101-pin board
    edge_pins = np.r_[0, 1, 0, np.arange(2, 102)]
    edge_boards = np.r_[0, 0, 1, np.ones(100, dtype=int)]
    g = PinBoardGraph.from_indices(np.arange(102), np.arange(2), edge_pins, edge_boards)
    n = 20_000
    for alpha in (0.0, 0.5):
        boards = CoBoardSampler(g, alpha=alpha).sample_boards(
            np.zeros(n, dtype=int), np.random.default_rng(0)
        )
        w = board_weights(g, alpha)
        assert abs((boards == 0).mean() - w[0] / w.sum()) < 0.015
    assert board_weights(g, 0.5).tolist() == [1.0, 0.1]
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        board_weights(g, -1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 14), st.integers(0, 5)), max_size=40),
    st.integers(0, 2**16),
)
def test_any_small_graph_samples_only_co_board_pins(edges, seed):
    edge_pins = np.array([e[0] for e in edges], dtype=int)
    edge_boards = np.array([e[1] for e in edges], dtype=int)
    g = PinBoardGraph.from_indices(np.arange(15), np.arange(6), edge_pins, edge_boards)
    pins = np.repeat(np.arange(15), 10)
    got = CoBoardSampler(g).sample(pins, np.random.default_rng(seed))
    mask = g.co_board_mask(np.arange(15), np.arange(15))
    np.fill_diagonal(mask, False)
    for p, q in zip(pins, got, strict=True):
        assert (q == -1) == (not mask[p].any())
        assert q == -1 or mask[p, q]


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_neighbor_probability_is_the_exact_marginal(
    hand_graph, random_graph, exact_transition, alpha
):
    step = exact_transition(hand_graph, alpha)
    sampler = CoBoardSampler(hand_graph, alpha=alpha)
    np.testing.assert_allclose(sampler.neighbor_probability(), step.mean(axis=0), atol=1e-12)
    # and it is what sampling from uniform anchors gives on a bigger graph
    big = CoBoardSampler(random_graph, alpha=alpha)
    anchors = np.random.default_rng(0).integers(0, random_graph.n_pins, 400_000)
    drawn = big.sample(anchors, np.random.default_rng(1))
    counts = np.bincount(drawn[drawn >= 0], minlength=random_graph.n_pins)
    expected = len(anchors) * big.neighbor_probability()
    assert (counts[expected == 0] == 0).all()
    z = (counts - expected)[expected > 0] / np.sqrt(expected[expected > 0])
    assert np.abs(z).max() < 5.5 and abs(z.mean()) < 0.1
