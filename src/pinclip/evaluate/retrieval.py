"""Exact nearest-neighbor search for evaluation and the related-pins relevance."""

from __future__ import annotations

import numpy as np
import torch

from pinclip.graph import PinBoardGraph


@torch.no_grad()
def exact_topk(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    exclude: np.ndarray | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """Indices of the top-k candidates by dot product per query; `exclude[i]` (a candidate
    index, e.g. the query pin itself) is never returned. Ties break by lower index."""
    k = min(k, candidates.shape[0] - (exclude is not None))
    out = []
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start : start + chunk].float() @ candidates.float().T
        if exclude is not None:
            rows = torch.arange(scores.shape[0])
            scores[rows, torch.as_tensor(exclude[start : start + chunk])] = -torch.inf
        # a stable sort, not topk: torch.topk orders ties arbitrarily (duplicates are common)
        out.append(torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k].numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def related_pins_hits(
    graph: PinBoardGraph, query_pins: np.ndarray, retrieved: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(hits [Q,K], n_relevant [Q]) where relevant = shares a board with the query pin."""
    co = (graph.pin_board[query_pins] @ graph.board_pin).tocsr()
    hits = np.zeros(retrieved.shape, dtype=bool)
    n_rel = np.zeros(len(query_pins), dtype=np.int64)
    for i, q in enumerate(query_pins):
        row = co.indices[co.indptr[i] : co.indptr[i + 1]]
        row = row[row != q]
        n_rel[i] = len(row)
        hits[i] = np.isin(retrieved[i], row)
    return hits, n_rel
