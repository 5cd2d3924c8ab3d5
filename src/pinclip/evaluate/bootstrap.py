"""Seeded bootstrap confidence intervals over queries (scipy's percentile bootstrap)."""

from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap


def mean_ci(
    values: np.ndarray, *, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-query values and its bootstrap interval.

    Percentile intervals: BCa is undefined when every query scores the same (a perfect or
    a zero score), which happens for strong models and for the random floor.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size == 1 or np.all(values == values[0]):
        return mean, mean, mean
    res = bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def ratio_ci(
    ours: np.ndarray,
    reference: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(ratio, low, high) of mean(ours) / mean(reference) over the same queries (paired)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(
            f"paired bootstrap needs the same queries: {ours.shape} vs {reference.shape}"
        )

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.mean(axis=axis) / np.maximum(b.mean(axis=axis), 1e-12)

    point = float(ratio(ours, reference))
    if ours.size < 2:
        return point, point, point
    res = bootstrap(
        (ours, reference),
        ratio,
        paired=True,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)
