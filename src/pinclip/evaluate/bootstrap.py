"""Seeded percentile-bootstrap confidence intervals over queries, vectorised.

A resample of n queries is a vector of counts (how often each query was drawn); the means
of every metric over every resample are then one matrix product, `counts @ values.T / n`,
and one draw serves every metric of a task (and both models of a paired ratio). Resamples
are made in chunks of bounded size, so 10^6 queries cost memory for a few resamples at a
time, not for all of them. The interval is the percentile interval of the resampled
statistic, the estimator `scipy.stats.bootstrap(method="percentile")` computes: BCa is
undefined when every query scores the same (a perfect or a zero score), which happens for
strong models and for the random floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

#: Resamples per task: 1000 keeps the Monte Carlo error of a 95% percentile bound about
#: 0.1 of the interval's half-width; at matrix-product cost it is not worth trading away.
N_RESAMPLES = 1000
_CELLS_PER_CHUNK = 1 << 22  # resamples × queries held at once (32 MiB of float64 counts)


def resampled_means(
    values: np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """[m, n] per-query values (or [n]) -> [m, n_resamples] (or [n_resamples]) means over
    bootstrap resamples of the n queries, the same resamples for every row."""
    values = np.asarray(values, dtype=np.float64)
    rows = np.atleast_2d(values)
    n = rows.shape[1]
    out = np.empty((rows.shape[0], n_resamples))
    for start, counts in _resample_counts(n, n_resamples, seed):
        out[:, start : start + len(counts)] = (counts @ rows.T).T
    return (out / n) if values.ndim > 1 else out[0] / n


def _resample_counts(n: int, n_resamples: int, seed: int):
    """(first resample, counts [b, n]) chunks: how often each query is drawn per resample.
    Small problems (every model and metric of a task has the same n) reuse one draw."""
    if n * n_resamples <= _CELLS_PER_CHUNK:
        yield 0, _counts_cached(n, n_resamples, seed)
        return
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // n)
    for start in range(0, n_resamples, chunk):
        yield start, _draw_counts(rng, n, min(chunk, n_resamples - start))


def _draw_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    draws = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
    return np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


@lru_cache(maxsize=16)
def _counts_cached(n: int, n_resamples: int, seed: int) -> np.ndarray:
    counts = _draw_counts(np.random.default_rng(seed), n, n_resamples)
    counts.flags.writeable = False
    return counts


def _interval(stat: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - level) / 2
    low, high = np.percentile(stat, [100 * alpha, 100 * (1 - alpha)], axis=-1)
    return low, high


def mean_cis(
    per_query: Mapping[str, np.ndarray],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float, float]]:
    """{metric: (mean, low, high)} for metrics over the same queries, from one set of draws."""
    names = list(per_query)
    if not names:
        return {}
    values = np.stack([np.asarray(per_query[m], dtype=np.float64) for m in names])
    if values.shape[1] == 0:
        return {m: (float("nan"),) * 3 for m in names}
    means = values.mean(axis=1)
    if values.shape[1] == 1:
        return {m: (float(v), float(v), float(v)) for m, v in zip(names, means, strict=True)}
    low, high = _interval(resampled_means(values, n_resamples=n_resamples, seed=seed), level)
    out = {}
    for i, m in enumerate(names):
        constant = np.all(values[i] == values[i, 0])  # every resample has the same mean
        lo, hi = (means[i], means[i]) if constant else (low[i], high[i])
        out[m] = (float(means[i]), float(lo), float(hi))
    return out


def mean_ci(
    values: np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-query values and its bootstrap interval."""
    return mean_cis({"x": values}, n_resamples=n_resamples, seed=seed, level=level)["x"]


def ratio_ci(
    ours: np.ndarray,
    reference: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(ratio, low, high) of mean(ours) / mean(reference) over the same queries (paired)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(
            f"paired bootstrap needs the same queries: {ours.shape} vs {reference.shape}"
        )
    if ours.size == 0:
        return (float("nan"),) * 3
    point = float(ours.mean() / max(reference.mean(), 1e-12))
    if ours.size < 2:
        return point, point, point
    a, b = resampled_means(np.stack([ours, reference]), n_resamples=n_resamples, seed=seed)
    low, high = _interval(a / np.maximum(b, 1e-12), level)
    return point, float(low), float(high)
