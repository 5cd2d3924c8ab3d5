"""Ranking metrics, exact search and bootstrap intervals against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinclip.evaluate.bootstrap import mean_ci, ratio_ci
from pinclip.retrieval import exact_topk, retrieval_metrics


def test_fewer_relevant_items_than_k():
    # 2 relevant items, both found at ranks 1 and 3 of 10: recall@10 = 2 / min(10, 2) = 1.
    hits = np.zeros((1, 10), bool)
    hits[0, [0, 2]] = True
    m = retrieval_metrics(hits, np.array([2]), ks=(1, 10))
    assert m["recall@1"][0] == 1.0  # 1 found / min(1, 2)
    assert m["recall@10"][0] == 1.0
    assert m["map@10"][0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    ideal = 1 + 1 / np.log2(3)
    assert m["ndcg@10"][0] == pytest.approx((1 + 1 / np.log2(4)) / ideal)
    assert m["mrr"][0] == 1.0


def test_more_relevant_items_than_k_and_late_first_hit():
    hits = np.zeros((1, 50), bool)
    hits[0, [1, 4]] = True  # ranks 2 and 5, 100 relevant in total
    m = retrieval_metrics(hits, np.array([100]), ks=(1, 10, 50))
    assert m["recall@1"][0] == 0.0
    assert m["recall@10"][0] == pytest.approx(2 / 10)
    assert m["recall@50"][0] == pytest.approx(2 / 50)
    assert m["mrr"][0] == pytest.approx(1 / 2)
    assert m["map@10"][0] == pytest.approx((1 / 2 + 2 / 5) / 10)


def test_query_without_relevant_item_is_excluded_not_scored():
    hits = np.array([[True, False], [False, False]])
    m = retrieval_metrics(hits, np.array([1, 0]), ks=(1,))
    assert all(len(v) == 1 for v in m.values())
    assert m["recall@1"][0] == 1.0


def test_no_hit_scores_zero():
    m = retrieval_metrics(np.zeros((1, 10), bool), np.array([3]), ks=(10,))
    assert m["recall@10"][0] == 0 and m["mrr"][0] == 0 and m["ndcg@10"][0] == 0


def test_exact_topk_breaks_ties_by_lower_index_and_excludes_self():
    candidates = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    top = exact_topk(torch.tensor([[1.0, 0.0]]), candidates, 3, exclude=np.array([1]))
    assert top.tolist() == [[0, 3, 2]]


@pytest.mark.parametrize("seed", range(6))
def test_exact_topk_equals_a_full_stable_sort(seed):
    # integer vectors make many exact ties, also at the k-th place (the full-sort fallback)
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(20, 300, (1,), generator=g))
    candidates = torch.randint(-2, 3, (n, 4), generator=g).float()
    if seed % 2:
        candidates = torch.randn(n, 4, generator=g)
    queries, k = candidates[:17], int(torch.randint(1, 60, (1,), generator=g))
    exclude = np.arange(17)
    expected = []
    for i, q in enumerate(queries):
        scores = candidates @ q
        scores[exclude[i]] = -torch.inf
        expected.append(torch.sort(scores, descending=True, stable=True).indices[:k].tolist())
    assert exact_topk(queries, candidates, k, exclude=exclude).tolist() == expected
    # blocks of candidates merged into the running top-k: the same order, ties included
    for chunk, block in ((5, 7), (17, k + 1), (1, 1000)):
        top = exact_topk(queries, candidates, k, exclude=exclude, chunk=chunk, block=block)
        assert top.tolist() == expected
    # without an exclusion, every candidate counts (the query itself first on ties by index)
    scores = queries @ candidates.T
    full = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k].tolist()
    assert exact_topk(queries, candidates, k, chunk=4, block=9).tolist() == full
    # float16 embeddings (what validation holds): scored in float32, block by block
    half, q16 = candidates.half(), queries.half()
    top = exact_topk(q16, half, k, exclude=exclude, chunk=5, block=7)
    assert top.tolist() == exact_topk(q16.float(), half.float(), k, exclude=exclude).tolist()


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(0).random(200)
    a, b = mean_ci(values, seed=3), mean_ci(values, seed=3)
    assert a == b
    assert a[1] < a[0] < a[2]
    assert a[2] - a[1] < 0.2
    assert mean_ci(np.ones(5)) == (1.0, 1.0, 1.0)


def test_paired_ratio_interval():
    ref = np.random.default_rng(1).random(300) + 0.5
    ratio, low, high = ratio_ci(2 * ref, ref)
    assert ratio == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)
    noisy = ref + np.random.default_rng(2).normal(0, 0.3, 300)
    ratio, low, high = ratio_ci(noisy, ref)
    assert low < ratio < high
    with pytest.raises(ValueError, match="same queries"):
        ratio_ci(ref[:3], ref)


def test_vectorised_bootstrap_matches_scipys_percentile_interval():
    """The same estimator as scipy.stats.bootstrap(method='percentile'): with different draws
    the bounds agree to within their Monte Carlo error (well under the interval's width)."""
    from scipy.stats import bootstrap

    hits = (np.random.default_rng(4).random(400) < 0.6).astype(float)
    ours = mean_ci(hits, n_resamples=4000, seed=0)
    ref = bootstrap(
        (hits,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(9)
    ).confidence_interval
    width = ours[2] - ours[1]
    assert abs(ours[1] - ref.low) < 0.1 * width and abs(ours[2] - ref.high) < 0.1 * width


def test_one_draw_serves_every_metric_and_large_query_sets_are_chunked(monkeypatch):
    from pinclip.evaluate import bootstrap as boot

    rng = np.random.default_rng(5)
    per_query = {"a": rng.random(300), "b": (rng.random(300) < 0.3).astype(float)}
    together = boot.mean_cis(per_query, seed=1)
    for m, v in per_query.items():  # the same draws whether scored together or alone
        assert together[m] == pytest.approx(boot.mean_ci(v, seed=1), rel=1e-12)
    monkeypatch.setattr(boot, "_CELLS_PER_CHUNK", 1000)  # 3 resamples per chunk, not cached
    chunked = boot.mean_cis(per_query, seed=1)
    for m in per_query:
        assert chunked[m][0] == together[m][0]
        assert chunked[m][1] < chunked[m][0] < chunked[m][2]
        assert abs(chunked[m][1] - together[m][1]) < 0.5 * (together[m][2] - together[m][1])
