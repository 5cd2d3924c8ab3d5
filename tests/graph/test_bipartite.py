from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pinclip.graph import PinBoardGraph


def test_from_edges_builds_both_csr_directions(hand_graph):
    g = hand_graph
    assert (g.n_pins, g.n_boards, g.n_edges) == (9, 6, 13)
    assert g.boards_of(0).tolist() == [0, 1]
    assert g.pins_of(2).tolist() == [1, 3, 4, 5]
    assert g.pin_degree[7] == 0 and g.board_size.tolist() == [3, 2, 4, 2, 1, 1]
    assert (g.board_pin != g.pin_board.T).nnz == 0


def test_duplicate_edges_count_once():
    g = PinBoardGraph.from_edges(
        np.array(["a", "b"]), np.array(["x"]), np.array(["a", "a", "b"]), np.array(["x", "x", "x"])
    )
    assert g.n_edges == 2 and set(g.pin_board.data) == {1.0}


def test_unknown_id_error_names_the_edge_row():
    with pytest.raises(ValueError, match=r"edge row 1: unknown board id 'zz'"):
        PinBoardGraph.from_edges(
            np.array(["a", "b"]), np.array(["x"]), np.array(["a", "b"]), np.array(["x", "zz"])
        )


def test_duplicate_pin_id_is_rejected():
    with pytest.raises(ValueError, match="duplicate pin id 'a'"):
        PinBoardGraph.from_edges(
            np.array(["a", "a"]), np.array(["x"]), np.array(["a"]), np.array(["x"])
        )


def test_from_catalog_uses_the_id_columns():
    cat = SimpleNamespace(
        pins=pd.DataFrame({"pin_id": ["p1", "p2", "p3"], "title": ["a", "b", "c"]}),
        boards=pd.DataFrame({"board_id": ["B"], "title": ["t"]}),
        edges=pd.DataFrame({"pin_id": ["p3", "p1"], "board_id": ["B", "B"]}),
    )
    g = PinBoardGraph.from_catalog(cat)
    assert g.pins_of(0).tolist() == [0, 2]
    assert g.co_board_mask(np.array([0]), np.array([1, 2])).tolist() == [[False, True]]


def test_from_catalog_over_chunked_arrow_ids_names_a_duplicate_and_an_unknown_id():
    def column(values):  # two chunks, as a catalog read by row group holds them
        return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array([values[:1], values[1:]])))

    def catalog(pins, edge_pins):
        return SimpleNamespace(
            pins=pd.DataFrame({"pin_id": column(pins)}),
            boards=pd.DataFrame({"board_id": column(["B", "C"])}),
            edges=pd.DataFrame({"pin_id": column(edge_pins), "board_id": column(["C", "B"])}),
        )

    g = PinBoardGraph.from_catalog(catalog(["p1", "p2", "p3"], ["p3", "p1"]))
    assert g.pin_board.indices.dtype == np.int32
    assert g.boards_of(2).tolist() == [1] and g.pins_of(0).tolist() == [0]
    with pytest.raises(ValueError, match="duplicate pin id 'p2'"):
        PinBoardGraph.from_catalog(catalog(["p1", "p2", "p2"], ["p2", "p1"]))
    with pytest.raises(ValueError, match="edge row 1: unknown pin id 'p9'"):
        PinBoardGraph.from_catalog(catalog(["p1", "p2", "p3"], ["p3", "p9"]))


def test_restrict_keeps_index_space_and_only_kept_pins_edges(random_graph):
    keep = np.random.default_rng(0).random(random_graph.n_pins) < 0.7
    sub = random_graph.restrict(keep)
    assert sub.pin_board.shape == random_graph.pin_board.shape
    assert (sub.pin_degree[~keep] == 0).all()
    assert (sub.pin_degree[keep] == random_graph.pin_degree[keep]).all()
    for p in np.flatnonzero(keep)[:50]:
        assert sub.boards_of(p).tolist() == random_graph.boards_of(p).tolist()
    assert (sub.board_pin != sub.pin_board.T).nnz == 0


def test_co_board_mask_matches_brute_force(random_graph, brute_co_board):
    truth = brute_co_board(random_graph)
    rng = np.random.default_rng(1)
    a, b = rng.choice(random_graph.n_pins, 200), rng.choice(random_graph.n_pins, 300)
    mask = random_graph.co_board_mask(a, b)
    expected = np.array(
        [[q in truth[p] or (p == q and random_graph.pin_degree[p] > 0) for q in b] for p in a]
    )
    assert mask.shape == (200, 300) and mask.dtype == bool
    assert (mask == expected).all()


def test_co_board_neighbors_and_has_neighbor(hand_graph, random_graph, brute_co_board):
    assert hand_graph.co_board_neighbors(0).tolist() == [1, 2, 3]
    assert hand_graph.co_board_neighbors(7).tolist() == []
    assert hand_graph.has_co_board_neighbor().tolist() == [True] * 7 + [False, False]
    truth = brute_co_board(random_graph)
    has = random_graph.has_co_board_neighbor()
    assert has.tolist() == [len(t) > 0 for t in truth]
    for p in range(0, random_graph.n_pins, 37):
        assert random_graph.co_board_neighbors(p).tolist() == sorted(truth[p])


def test_from_a_catalog_written_and_read_by_pinclip_data(tmp_path):
    catalog = pytest.importorskip("pinclip.data.catalog")
    pins = pd.DataFrame(
        {
            "pin_id": ["p1", "p2", "p3"],
            "image": ["images/1.png", "images/2.png", "images/3.png"],
            "title": ["red cat", "blue cat", "green dog"],
            "description": ["a", "b", "c"],
        }
    )
    boards = pd.DataFrame({"board_id": ["cats", "all"], "title": ["Cats", "All"]})
    edges = pd.DataFrame(
        {"pin_id": ["p1", "p2", "p3", "p1"], "board_id": ["cats", "cats", "all", "all"]}
    )
    catalog.write_catalog(tmp_path, pins, boards, edges, {"name": "tiny"})
    cat, _ = catalog.read_catalog(tmp_path, check_images=False)
    g = PinBoardGraph.from_catalog(cat)
    assert (g.n_pins, g.n_boards, g.n_edges) == (3, 2, 4)
    assert g.co_board_mask(np.array([0, 1]), np.array([1, 2])).tolist() == [
        [True, True],
        [True, False],
    ]


def test_pin_board_without_drops_exactly_the_edges_to_those_boards(random_graph):
    rng = np.random.default_rng(0)
    for boards in (np.array([], dtype=np.int64), rng.choice(random_graph.n_boards, 5, False)):
        got = random_graph.pin_board_without(boards)
        dense = random_graph.pin_board.toarray()
        dense[:, boards] = 0
        assert got.shape == random_graph.pin_board.shape and got.has_sorted_indices
        assert np.array_equal(got.toarray(), dense)
        assert got.nnz == int(dense.sum())  # no stored zeros
