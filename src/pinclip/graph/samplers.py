"""Co-board neighbor sampling: pin → one of its boards → another pin of that board.

Very large boards (catch-all boards like "stuff I like") are noisy evidence that two pins
belong together, so the board step is biased against them: a pin picks board ``b`` with
probability ∝ ``(|b| - 1) ** -alpha`` among its boards that hold at least one other pin
(``alpha=0`` is uniform over the pin's boards; the larger ``alpha``, the more small boards
are preferred; the default 0.5 halves the pull of a board 4× larger). The second step is
uniform over the other pins of the board. Everything is vectorised over a batch:
one weighted draw is a ``searchsorted`` into the per-edge cumulative weights.
"""

from __future__ import annotations

import numpy as np

from pinclip.errors import ConfigError

from .bipartite import PinBoardGraph

DEFAULT_ALPHA = 0.5


_PINS_PER_PASS = 1 << 16  # pins whose edges `neighbor_probability` holds at once


def board_weights(graph: PinBoardGraph, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """float64 [n_boards]: board-step weight ``(size-1)^-alpha``, 0 for boards with < 2 pins."""
    if alpha < 0:
        raise ConfigError(f"alpha must be >= 0 (it down-weights large boards), got {alpha}")
    others = graph.board_size.astype(np.float64) - 1.0
    weights = np.zeros_like(others)
    has_other = others >= 1
    weights[has_other] = others[has_other] ** -alpha
    return weights


class CoBoardSampler:
    """Draws one co-board neighbor per query pin; ``-1`` when the pin has none.

    ``sample`` is deterministic given the generator it is passed (or the sampler's own,
    seeded by ``seed``), and never returns the query pin itself.
    """

    def __init__(self, graph: PinBoardGraph, *, alpha: float = DEFAULT_ALPHA, seed: int = 0):
        self.graph = graph
        self.alpha = alpha
        self.rng = np.random.default_rng(seed)
        pb = graph.pin_board
        # cum[e] = total weight of edges 0..e-1, so a pin's edges span [cum[start], cum[end]).
        self._cum = np.zeros(pb.nnz + 1)
        np.cumsum(board_weights(graph, alpha)[pb.indices], out=self._cum[1:])
        # a pin's total weight (its edge range's ends are read from indptr per draw)
        self._total = self._cum[pb.indptr[1:]] - self._cum[pb.indptr[:-1]]
        # a pin with zero total weight has no board shared with another pin
        self._total[self._total <= 1e-300] = 0.0

    def has_neighbor(self, pins: np.ndarray) -> np.ndarray:
        return self._total[np.asarray(pins, dtype=np.int64)] > 0

    def neighbor_probability(self) -> np.ndarray:
        """float64 [n_pins]: chance that a pin is the neighbor drawn for a uniform anchor pin.

        Computed exactly in O(edges) (no sampling); its log is the logQ correction for
        popular pins in the neighbor loss. Sums to the fraction of pins with a neighbor.
        """
        g = self.graph
        pb = g.pin_board
        weight = board_weights(g, self.alpha)
        others = np.maximum(g.board_size - 1, 1).astype(np.float64)
        degree = g.pin_degree
        spans = [
            (lo, min(lo + _PINS_PER_PASS, g.n_pins)) for lo in range(0, g.n_pins, _PINS_PER_PASS)
        ]

        def enter(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
            """The boards of pins lo..hi-1's edges, and the chance each edge's pin steps into
            its board."""
            boards = pb.indices[pb.indptr[lo] : pb.indptr[hi]]
            total = np.repeat(self._total[lo:hi], degree[lo:hi])
            w = weight[boards]
            return boards, np.divide(w, total, out=np.zeros_like(w), where=total > 0)

        entered = np.zeros(g.n_boards)  # chance of stepping into each board
        for lo, hi in spans:  # edges a span of pins at a time: no edge-length temporaries
            boards, p = enter(lo, hi)
            entered += np.bincount(boards, weights=p, minlength=g.n_boards)
        out = np.zeros(g.n_pins)
        for lo, hi in spans:
            boards, p = enter(lo, hi)
            # arriving at a pin: from any *other* pin of the board, then 1 of its size-1 others
            arrive = (entered[boards] - p) / others[boards]
            rows = np.repeat(np.arange(hi - lo), degree[lo:hi])
            out[lo:hi] = np.bincount(rows, weights=arrive, minlength=hi - lo)
        return out / g.n_pins

    def sample_boards(self, pins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One board per pin (weighted as documented above); -1 when the pin has none."""
        pins = np.asarray(pins, dtype=np.int64)
        ok = self.has_neighbor(pins)
        all_ok = bool(ok.all())
        q = pins if all_ok else pins[ok]
        indptr = self.graph.pin_board.indptr
        start, end = indptr[q].astype(np.int64), indptr[q + 1].astype(np.int64)
        # draws stay strictly below the segment's end despite float round-up
        hi = np.nextafter(self._cum[end], -np.inf)
        u = np.minimum(self._cum[start] + rng.random(len(q)) * self._total[q], hi)
        edge = self._search(u, start, np.maximum(end - 1, start))  # within the pin's edges
        chosen = self.graph.pin_board.indices[edge].astype(np.int64)
        if all_ok:
            return chosen
        boards = np.full(len(pins), -1, dtype=np.int64)
        boards[ok] = chosen
        return boards

    def _search(self, u: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Largest edge e in [lo, hi] with cum[e] <= u, per query.

        A binary search bounded to each pin's own edges: ceil(log2(max degree)) vectorised
        rounds over the batch, much faster than ``np.searchsorted`` over all edges (whose
        random probes miss the cache) when pins have a handful of boards.
        """
        if lo.size == 0:
            return lo
        n_rounds = int(np.ceil(np.log2(int((hi - lo).max()) + 1)))
        for _ in range(n_rounds):
            mid = (lo + hi + 1) >> 1
            go_right = self._cum[mid] <= u
            lo = np.where(go_right, mid, lo)
            hi = np.where(go_right, hi, mid - 1)
        return lo

    def sample(self, pins: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """int64 [len(pins)]: a co-board neighbor of each pin, or -1 if it has none."""
        rng = self.rng if rng is None else rng
        pins = np.asarray(pins, dtype=np.int64)
        boards = self.sample_boards(pins, rng)
        ok = boards >= 0
        all_ok = bool(ok.all())
        b, p = (boards, pins) if all_ok else (boards[ok], pins[ok])
        bp = self.graph.board_pin
        start = bp.indptr[b].astype(np.int64)
        size = bp.indptr[b + 1].astype(np.int64) - start
        # uniform over the size-1 *other* slots: draw among the first size-1 slots and
        # swap the query pin's slot for the last one
        k = np.minimum((rng.random(len(b)) * (size - 1)).astype(np.int64), size - 2)
        picked = bp.indices[start + k].astype(np.int64)
        is_self = picked == p
        picked[is_self] = bp.indices[start[is_self] + size[is_self] - 1]
        if all_ok:
            return picked
        out = np.full(len(pins), -1, dtype=np.int64)
        out[ok] = picked
        return out
