import numpy as np
import pytest

from pinclip.graph import PinBoardGraph, Split, split_pins, synthetic_graph


@pytest.fixture(scope="module")
def graph() -> PinBoardGraph:
    return synthetic_graph(5000, seed=3, min_boards=1, max_boards=3, mean_board_size=8)


@pytest.fixture(scope="module")
def split(graph) -> Split:
    return split_pins(graph, cold_frac=0.1, val_frac=0.05, seed=0)


def test_parts_are_disjoint_covering_and_sized(graph, split):
    parts = np.concatenate([split.warm, split.val, split.cold])
    assert np.array_equal(np.sort(parts), np.arange(graph.n_pins))
    assert (len(split.cold), len(split.val)) == (500, 250)
    for part in (split.warm, split.val, split.cold):
        assert (np.diff(part) > 0).all()  # sorted, unique


def test_no_held_out_pin_edge_in_train_graph(graph, split):
    train = split.train_graph
    held = np.concatenate([split.val, split.cold])
    assert (train.pin_degree[held] == 0).all()
    assert (train.board_pin[:, held].nnz) == 0
    assert (train.pin_degree[split.warm] == graph.pin_degree[split.warm]).all()
    assert train.n_edges == graph.pin_degree[split.warm].sum()


def test_every_held_out_pin_has_ground_truth(graph, split):
    has = graph.has_co_board_neighbor()
    assert has[split.cold].all() and has[split.val].all()
    # ground truth is in the full graph: each cold pin shares a board with some other pin
    mask = graph.co_board_mask(split.cold[:100], np.arange(graph.n_pins))
    mask[np.arange(100), split.cold[:100]] = False
    assert mask.any(axis=1).all()


def test_boards_keep_a_warm_pin(graph, split):
    nonempty = graph.board_size > 0
    assert (split.train_graph.board_size[nonempty] > 0).all()


def test_deterministic_per_seed(graph, split):
    again = split_pins(graph, cold_frac=0.1, val_frac=0.05, seed=0)
    other = split_pins(graph, cold_frac=0.1, val_frac=0.05, seed=1)
    assert np.array_equal(again.labels, split.labels)
    assert not np.array_equal(other.labels, split.labels)


def test_save_load_round_trip(graph, split, tmp_path):
    path = split.save(tmp_path / "split.parquet")
    back = Split.load(path, graph)
    assert np.array_equal(back.labels, split.labels)
    assert back.params == {"cold_frac": 0.1, "val_frac": 0.05, "seed": 0}
    assert (back.train_graph.pin_board != split.train_graph.pin_board).nnz == 0


def test_load_against_another_graph_fails_clearly(split, tmp_path):
    path = split.save(tmp_path / "split.parquet")
    other = synthetic_graph(100, seed=0)
    with pytest.raises(ValueError, match=r"split.parquet: (row \d+: pin_id|lists)"):
        Split.load(path, other)


def test_impossible_fractions_fail_clearly(hand_graph):
    with pytest.raises(ValueError, match="only 7 of 9 pins share a board"):
        split_pins(hand_graph, cold_frac=0.5, val_frac=0.4)
    with pytest.raises(ValueError, match="sum < 1"):
        split_pins(hand_graph, cold_frac=0.7, val_frac=0.4)


def test_small_graph_only_holds_out_eligible_pins(hand_graph):
    for seed in range(20):
        s = split_pins(hand_graph, cold_frac=0.25, val_frac=0.12, seed=seed)
        held = np.concatenate([s.val, s.cold])
        assert not np.isin(held, [7, 8]).any()  # no co-board neighbor: never held out
        assert (len(s.cold), len(s.val)) == (2, 1)
