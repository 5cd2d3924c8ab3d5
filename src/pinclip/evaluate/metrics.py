"""Ranking metrics from a hit matrix: Recall@k, nDCG@k, mAP@k, MRR.

Inputs are `hits` [Q, K] (True where the i-th result of a query is relevant, results in
rank order) and `n_relevant` [Q]. Queries with no relevant item are undefined for every
metric and are excluded (their count is reported) rather than scored 0 or 1.
"""

from __future__ import annotations

import numpy as np


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
