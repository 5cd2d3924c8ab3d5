"""Retrieval primitives shared by training (validation) and evaluation (every task).

One place for each: embedding a set of pins with a model (`embed_pins`), exact top-k
search (`exact_topk`), "shares a board" relevance (`related_pins_hits`) and the ranking
metrics (`retrieval_metrics`: Recall@k, nDCG@10, mAP@10, MRR). Training's validation
(`pinclip.train.recipe`, the recall that picks the best checkpoint) and the report's
related-pins tasks both score with `exact_topk` + `related_pins_hits` + `retrieval_metrics`;
`related_pins_recall` is the one-call form of the same recall, for benchmarks
(`bench/ablation.py`).

This module sits below both `pinclip.train` and `pinclip.evaluate` (it needs only the graph
and torch), so evaluation may use training code and never the reverse.

Metric inputs are `hits` [Q, K] (True where the i-th result of a query is relevant, results
in rank order) and `n_relevant` [Q]. Queries with no relevant item are undefined for every
metric and are excluded (their count is reported) rather than scored 0 or 1.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from pinclip.graph import PinBoardGraph

__all__ = [
    "exact_topk",
    "embed_pins",
    "map_at_k",
    "mrr",
    "ndcg_at_k",
    "recall_at_k",
    "related_pins_hits",
    "related_pins_recall",
    "related_pins_topk",
    "retrieval_metrics",
]


class BatchInputs(Protocol):
    """What `embed_pins` reads pins from (`pinclip.model.inputs.PinInputs` fits)."""

    def batch(self, idx: np.ndarray) -> dict[str, Any]: ...


@torch.no_grad()
def embed_pins(
    model: torch.nn.Module,
    inputs: BatchInputs,
    pins: np.ndarray,
    batch_size: int = 256,
    keys: tuple[str, ...] = ("image_emb", "text_emb", "pin_emb"),
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """image_emb, text_emb and pin_emb (image + text fused; those in `keys`) of `pins`,
    on the CPU as `dtype`, computed in eval mode (the model's train/eval mode is restored).
    float16 halves the N × D matrix a validation over every pin holds."""
    was_training = model.training
    model.eval()
    result: dict[str, torch.Tensor] = {}
    for start in range(0, len(pins), batch_size):
        out = model(**inputs.batch(pins[start : start + batch_size]))
        for key in keys:
            rows = getattr(out, key).to("cpu", dtype)
            if key not in result:  # filled in place: no second copy of N rows to concatenate
                result[key] = torch.empty(len(pins), rows.shape[1], dtype=dtype)
            result[key][start : start + len(rows)] = rows
    model.train(was_training)
    return result


@torch.no_grad()
def exact_topk(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    exclude: np.ndarray | None = None,
    chunk: int | None = None,
    block: int | None = None,
) -> np.ndarray:
    """Indices of the top-k candidates by dot product per query; `exclude[i]` (a candidate
    index, e.g. the query pin itself) is never returned. Ties break by lower index.

    `chunk` queries (default 1024) are scored against `block` candidates at a time (default:
    ~16M scores, 64 MiB): memory stays flat in N and every matmul stays large (scoring a handful of
    queries against all N pins at a time rereads the candidate matrix per handful). Once a
    query holds k candidates, only a block's scores at or above its k-th can enter: those few
    are merged, and the selection pass over the whole block is skipped. Scores are float32
    whatever the embeddings' dtype (float16 candidates are upcast a block at a time)."""
    n = candidates.shape[0]
    k = min(k, n - (exclude is not None))
    if k <= 0 or queries.shape[0] == 0:
        return np.zeros((queries.shape[0], max(k, 0)), dtype=np.int64)
    chunk = chunk or 1024
    block = block or max(k + 1, 2**24 // chunk)
    out = []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk].float()
        skip = None if exclude is None else torch.as_tensor(exclude[start : start + chunk])
        best_v = best_i = None
        for first in range(0, n, block):  # 1. score a block of candidates
            scores = q @ candidates[first : first + block].float().T  # float16 rows: upcast
            if skip is not None:  # 2. the excluded candidate of each query in this block
                rows = torch.nonzero((skip >= first) & (skip < first + scores.shape[1])).flatten()
                scores[rows, skip[rows] - first] = -torch.inf
            if best_v is None or best_v.shape[1] < k:  # 3a. the block's own top-k
                index = _stable_topk(scores, min(k, scores.shape[1]))
                values, index = scores.gather(1, index), index + first
            else:  # 3b. only the scores that reach each query's k-th so far
                values, index = _at_least(scores, best_v[:, -1:], first, n)
                if values.shape[1] == 0:
                    continue
            if best_v is not None:  # 4. merged into the running top-k
                values, index = _merge_topk(best_v, best_i, values, index, k)
            best_v, best_i = values, index
        out.append(best_i.numpy())
    return np.concatenate(out)


def _at_least(
    scores: torch.Tensor, floor: torch.Tensor, first: int, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's scores >= its `floor` (and their candidate indices), left-aligned in a
    [rows, most found] matrix padded with -inf at index `n` (after every real candidate)."""
    rows, cols = torch.nonzero(scores >= floor, as_tuple=True)
    counts = torch.bincount(rows, minlength=scores.shape[0])
    width = int(counts.max()) if len(rows) else 0
    values = torch.full((scores.shape[0], width), -torch.inf)
    index = torch.full((scores.shape[0], width), n, dtype=torch.int64)
    slot = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[rows]
    values[rows, slot], index[rows, slot] = scores[rows, cols], cols + first
    return values, index


def _merge_topk(
    v1: torch.Tensor, i1: torch.Tensor, v2: torch.Tensor, i2: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k of two candidate sets per row, ordered by (score desc, index asc)."""
    values, index = torch.cat([v1, v2], 1), torch.cat([i1, i2], 1)
    by_index = torch.argsort(index, dim=1)
    values, index = values.gather(1, by_index), index.gather(1, by_index)
    keep = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, keep), index.gather(1, keep)


def _stable_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the k highest scores' indices, ties broken by lower index (duplicates are
    common, and torch.topk orders ties arbitrarily). topk(k + 1) finds the set; a row whose
    k-th and (k+1)-th scores tie is sorted in full instead, so the result is always exact."""
    n = scores.shape[1]
    if k == 0:
        return torch.zeros((scores.shape[0], 0), dtype=torch.int64)
    top_values, top_index = torch.topk(scores, min(k + 1, n), dim=1)
    values, index = top_values[:, :k], top_index[:, :k]
    by_index = torch.argsort(index, dim=1)  # order the set by (score desc, index asc)
    values, index = values.gather(1, by_index), index.gather(1, by_index)
    by_score = torch.sort(values, dim=1, descending=True, stable=True).indices
    index = index.gather(1, by_score)
    if k < n:
        tied = top_values[:, k - 1] == top_values[:, k]  # a tie at the cut: the set is not unique
        for row in torch.nonzero(tied).flatten().tolist():
            index[row] = torch.sort(scores[row], descending=True, stable=True).indices[:k]
    return index


def related_pins_hits(
    graph: PinBoardGraph, query_pins: np.ndarray, retrieved: np.ndarray, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(hits [Q,K], n_relevant [Q]) where relevant = shares a board with the query pin.

    The co-board rows are built `chunk` queries at a time: a query on a big board has as
    many relevant pins as the board, so all Q rows at once would grow with Q × board size."""
    hits = np.zeros(retrieved.shape, dtype=bool)
    n_rel = np.zeros(len(query_pins), dtype=np.int64)
    for start in range(0, len(query_pins), chunk):
        block = query_pins[start : start + chunk]
        co = (graph.pin_board[block] @ graph.board_pin).tocsr()
        for i, q in enumerate(block):
            row = co.indices[co.indptr[i] : co.indptr[i + 1]]
            row = row[row != q]
            n_rel[start + i] = len(row)
            hits[start + i] = np.isin(retrieved[start + i], row)
    return hits, n_rel


def related_pins_topk(
    query_emb: torch.Tensor, candidate_emb: torch.Tensor, query_pins: np.ndarray, k: int
) -> np.ndarray:
    """Related-pins search: the top-k pins for each query pin (`query_emb[i]` is pin
    `query_pins[i]`) among every pin (`candidate_emb`), the query pin itself excluded."""
    return exact_topk(query_emb, candidate_emb, k, exclude=query_pins)


def related_pins_recall(
    query_emb: torch.Tensor,
    candidate_emb: torch.Tensor,
    graph: PinBoardGraph,
    query_pins: np.ndarray,
    *,
    k: int = 10,
) -> float:
    """Mean Recall@k of related-pins search: query pin i (embedded as `query_emb[i]`) against
    every pin (`candidate_emb`, the query itself excluded); relevant = shares a board in
    `graph`. The report's related-pins tasks run the same search and hits, at depth 50."""
    if len(query_pins) == 0:
        return 0.0
    top = related_pins_topk(query_emb, candidate_emb, query_pins, k)
    hits, n_rel = related_pins_hits(graph, query_pins, top)
    return float(retrieval_metrics(hits, n_rel, ks=(k,))[f"recall@{k}"].mean())


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Relevant items found in the top k over min(k, #relevant), per query."""
    found = hits[:, :k].sum(axis=1)
    return found / np.minimum(k, n_relevant)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-gain nDCG@k, per query."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(k, n_relevant) - 1]
    return dcg / ideal


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Mean of precision at each hit rank within k, over min(k, #relevant), per query."""
    h = hits[:, :k].astype(np.float64)
    precision = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (precision * h).sum(axis=1) / np.minimum(k, n_relevant)


def mrr(hits: np.ndarray) -> np.ndarray:
    """1 / rank of the first relevant result (0 when none is retrieved), per query."""
    any_hit = hits.any(axis=1)
    first = hits.argmax(axis=1) + 1
    return np.where(any_hit, 1.0 / first, 0.0)


def retrieval_metrics(
    hits: np.ndarray, n_relevant: np.ndarray, ks: tuple[int, ...] = (1, 10, 50)
) -> dict[str, np.ndarray]:
    """Per-query arrays of every metric, over the queries that have a relevant item."""
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant)
    valid = n_relevant > 0
    hits, n_relevant = hits[valid], n_relevant[valid]
    out = {f"recall@{k}": recall_at_k(hits, n_relevant, k) for k in ks}
    out["ndcg@10"] = ndcg_at_k(hits, n_relevant, 10)
    out["map@10"] = map_at_k(hits, n_relevant, 10)
    out["mrr"] = mrr(hits)
    return out
