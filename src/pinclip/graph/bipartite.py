"""The pin–board bipartite graph in CSR form.

Pins and boards are indexed 0..n-1 in the order of ``pin_ids`` / ``board_ids``. Pin–pin
relations (two pins sharing a board) are always computed through the boards, never by
materialising the pin×pin matrix, so memory stays linear in the number of edges. Built from
a catalog, the ids are numpy variable-width string arrays (``StringDType``: no Python object
per id) and edge ids are matched to positions by Arrow's hash join, not a Python dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from pinclip.data.catalog import hash_ids, string_array
from pinclip.errors import InputError
from pinclip.memory import trim_heap

if TYPE_CHECKING:
    from pinclip.data.catalog import Catalog


def _index_of(ids: np.ndarray, what: str) -> pd.Index:
    index = pd.Index(ids)
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise InputError(f"duplicate {what} id {str(dup)!r}: {what} ids must be unique")
    return index


def _lookup(index: pd.Index, values: np.ndarray, what: str) -> np.ndarray:
    """Map ids to positions, naming the first edge row whose id is unknown."""
    pos = index.get_indexer(values)
    if (pos < 0).any():
        row = int(np.flatnonzero(pos < 0)[0])
        raise InputError(
            f"edge row {row}: unknown {what} id {str(values[row])!r}; "
            f"every edge must point to a {what} listed in {what}_ids"
        )
    return pos


_ONES = np.ones(0, dtype=np.float32)


def _ones(n: int) -> np.ndarray:
    """A read-only float32 view of n ones, all views sharing one array (grown as needed)."""
    global _ONES
    if len(_ONES) < n:
        _ONES = np.ones(n, dtype=np.float32)
        _ONES.flags.writeable = False
    return _ONES[:n]


_ROWS_PER_CHUNK = 1 << 16  # ids turned into Python strings at a time (bounded transient memory)


def ids_to_numpy(ids: pa.Array) -> np.ndarray:
    """Arrow string ids as a numpy array of ``StringDType`` (object dtype on numpy < 2)."""
    dtype = np.dtypes.StringDType() if hasattr(np.dtypes, "StringDType") else object
    out = np.empty(len(ids), dtype=dtype)
    for start in range(0, len(ids), _ROWS_PER_CHUNK):
        chunk = ids[start : start + _ROWS_PER_CHUNK]
        out[start : start + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
    return out


def _arrow_positions(
    ids: pa.Array | pa.ChunkedArray, values: pa.Array | pa.ChunkedArray, what: str
) -> np.ndarray:
    """int32 positions of `values` in the unique `ids` (Arrow hash lookup); errors as
    `_lookup`."""
    keys = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids  # one value set
    pos = pc.index_in(values, value_set=keys)
    if pos.null_count:
        row = int(np.flatnonzero(pos.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(
            f"edge row {row}: unknown {what} id {values[row].as_py()!r}; "
            f"every edge must point to a {what} listed in {what}_ids"
        )
    return np.asarray(pos.to_numpy(), dtype=np.int32)


def _check_unique(ids: pa.Array | pa.ChunkedArray, what: str) -> None:
    """Sorted 64-bit hashes (16 bytes per id, no hash table of strings); the exact check,
    which names the first duplicate, only when two hashes are equal."""
    hashes = np.sort(hash_ids(ids))
    if (hashes[1:] == hashes[:-1]).any():
        _index_of(ids.to_numpy(zero_copy_only=False), what)


@dataclass(frozen=True, eq=False)
class PinBoardGraph:
    """Pins × boards incidence in CSR (``pin_board``) and its transpose (``board_pin``).

    Both matrices hold 1.0 per (deduplicated) edge and have sorted indices, so a pin's
    boards are ``pin_board.indices[indptr[p]:indptr[p+1]]`` and a board's pins likewise.
    """

    pin_ids: np.ndarray
    board_ids: np.ndarray
    pin_board: sp.csr_matrix
    board_pin: sp.csr_matrix

    def __post_init__(self) -> None:
        # every edge's value is 1.0: both directions (and every graph) read one shared,
        # read-only array of ones instead of holding 4 bytes per edge each
        for matrix in (self.pin_board, self.board_pin):
            matrix.data = _ones(matrix.nnz)

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def from_indices(
        cls,
        pin_ids: np.ndarray,
        board_ids: np.ndarray,
        edge_pin_idx: np.ndarray,
        edge_board_idx: np.ndarray,
    ) -> PinBoardGraph:
        """Build from edge *positions* into ``pin_ids`` / ``board_ids`` (fast path)."""
        pin_ids, board_ids = np.asarray(pin_ids), np.asarray(board_ids)
        # int32 positions when they fit (scipy would make its own int32 copies of int64 ones)
        small = max(len(pin_ids), len(board_ids), len(edge_pin_idx)) < 2**31
        rows = np.asarray(edge_pin_idx, dtype=np.int32 if small else np.int64)
        cols = np.asarray(edge_board_idx, dtype=np.int32 if small else np.int64)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise ValueError("edge pin and board arrays must be 1-D and of equal length")
        n_p, n_b = len(pin_ids), len(board_ids)
        for name, idx, n in (("pin", rows, n_p), ("board", cols, n_b)):
            bad = np.flatnonzero((idx < 0) | (idx >= n))
            if bad.size:
                raise ValueError(
                    f"edge row {int(bad[0])}: {name} index {int(idx[bad[0]])} out of range [0, {n})"
                )
        data = np.ones(len(rows), dtype=np.float32)
        pin_board = sp.csr_matrix((data, (rows, cols)), shape=(n_p, n_b))
        pin_board.sum_duplicates()  # duplicate edges count once
        pin_board.data[:] = 1.0
        pin_board.indices = pin_board.indices.astype(np.int32, copy=False)
        board_pin = pin_board.T.tocsr()
        board_pin.sort_indices()
        return cls(pin_ids, board_ids, pin_board, board_pin)

    @classmethod
    def from_edges(
        cls,
        pin_ids: np.ndarray,
        board_ids: np.ndarray,
        edge_pins: np.ndarray,
        edge_boards: np.ndarray,
    ) -> PinBoardGraph:
        """Build from edges given as pin and board *ids* (any hashable dtype)."""
        pin_index = _index_of(np.asarray(pin_ids), "pin")
        board_index = _index_of(np.asarray(board_ids), "board")
        rows = _lookup(pin_index, np.asarray(edge_pins), "pin")
        cols = _lookup(board_index, np.asarray(edge_boards), "board")
        return cls.from_indices(np.asarray(pin_ids), np.asarray(board_ids), rows, cols)

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> PinBoardGraph:
        """Build from a catalog's ``pins``, ``boards`` and ``edges`` tables (Arrow columns in,
        numpy string ids and CSR out: no Python object per pin or edge)."""
        columns = (
            catalog.pins["pin_id"],
            catalog.boards["board_id"],
            catalog.edges["pin_id"],
            catalog.edges["board_id"],
        )
        try:
            pin_ids, board_ids, edge_pins, edge_boards = map(string_array, columns)
        except (TypeError, pa.ArrowException):  # ids that are not text: hashed as objects
            return cls.from_edges(*(np.asarray(c) for c in columns))
        _check_unique(pin_ids, "pin")
        _check_unique(board_ids, "board")
        rows = _arrow_positions(pin_ids, edge_pins, "pin")
        cols = _arrow_positions(board_ids, edge_boards, "board")
        graph = cls.from_indices(ids_to_numpy(pin_ids), ids_to_numpy(board_ids), rows, cols)
        trim_heap()  # the hash tables and COO arrays are freed: their pages back to the kernel
        return graph

    # ---- sizes and degrees ------------------------------------------------------------
    @property
    def n_pins(self) -> int:
        return self.pin_board.shape[0]

    @property
    def n_boards(self) -> int:
        return self.pin_board.shape[1]

    @property
    def n_edges(self) -> int:
        return int(self.pin_board.nnz)

    @property
    def pin_degree(self) -> np.ndarray:
        """Number of boards of each pin."""
        return np.diff(self.pin_board.indptr)

    @property
    def board_size(self) -> np.ndarray:
        """Number of pins on each board."""
        return np.diff(self.board_pin.indptr)

    def pin_board_without(self, boards: np.ndarray) -> sp.csr_matrix:
        """``pin_board`` with every edge to ``boards`` dropped: the same shape, indices
        sorted, values the shared ones; a mask over the edges, not a matrix product."""
        pb = self.pin_board
        dropped = np.zeros(self.n_boards, dtype=bool)
        dropped[np.asarray(boards, dtype=np.int64)] = True
        kept = ~dropped[pb.indices]
        before = np.zeros(pb.nnz + 1, dtype=pb.indptr.dtype)  # kept edges before each edge
        np.cumsum(kept, out=before[1:])
        indices = pb.indices[kept]
        return sp.csr_matrix(
            (_ones(len(indices)), indices, before[pb.indptr]), shape=pb.shape, copy=False
        )

    def boards_of(self, pin: int) -> np.ndarray:
        p = self.pin_board
        return p.indices[p.indptr[pin] : p.indptr[pin + 1]]

    def pins_of(self, board: int) -> np.ndarray:
        b = self.board_pin
        return b.indices[b.indptr[board] : b.indptr[board + 1]]

    def has_co_board_neighbor(self) -> np.ndarray:
        """bool [n_pins]: the pin shares at least one board with another pin."""
        shared_edge = self.board_size[self.pin_board.indices] >= 2
        pin_of_edge = np.repeat(np.arange(self.n_pins), self.pin_degree)
        return np.bincount(pin_of_edge[shared_edge], minlength=self.n_pins) > 0

    def co_board_neighbors(self, pin: int) -> np.ndarray:
        """Sorted indices of the pins sharing a board with ``pin`` (itself excluded)."""
        boards = self.boards_of(pin)
        if boards.size == 0:
            return np.empty(0, dtype=np.int64)
        nbrs = np.unique(self.board_pin[boards].indices)
        return nbrs[nbrs != pin].astype(np.int64)

    # ---- derived graphs and relations --------------------------------------------------
    def restrict(self, pin_mask: np.ndarray) -> PinBoardGraph:
        """Same pin/board index space, keeping only the edges of pins where ``pin_mask``."""
        pin_mask = np.asarray(pin_mask, dtype=bool)
        if pin_mask.shape != (self.n_pins,):
            raise ValueError(f"pin_mask must have shape ({self.n_pins},), got {pin_mask.shape}")
        keep = sp.diags(pin_mask.astype(np.float32), format="csr")
        pin_board = (keep @ self.pin_board).tocsr()
        pin_board.eliminate_zeros()
        pin_board.sort_indices()
        pin_board.indices = pin_board.indices.astype(np.int32, copy=False)
        board_pin = pin_board.T.tocsr()
        board_pin.sort_indices()
        return PinBoardGraph(self.pin_ids, self.board_ids, pin_board, board_pin)

    def co_board_mask(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """bool [len(a), len(b)]: True where pin ``a[i]`` and pin ``b[j]`` share a board.

        Only the requested block is computed (a sparse product of the two row slices), so
        this is cheap for training batches and evaluation query blocks.
        """
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        shared = self.pin_board[a] @ self.pin_board[b].T
        return shared.toarray() > 0

    def __repr__(self) -> str:
        return f"PinBoardGraph(pins={self.n_pins}, boards={self.n_boards}, edges={self.n_edges})"
