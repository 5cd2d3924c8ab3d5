"""One reading of a comparison everywhere: floors, n/a by construction, the CI rule, small splits."""

from __future__ import annotations

import logging

import numpy as np

from pinclip.evaluate.report import best_baseline
from pinclip.evaluate.tasks import EvalResult, TaskResult


def _result(name: str, per_query: np.ndarray, *, is_floor: bool = False) -> EvalResult:
    """Cold related pins (curated) with these per-query Recall@10 values."""
    n = len(per_query)
    mean = float(per_query.mean())
    task = TaskResult(
        "related_cold",
        "curated",
        {"recall@10": per_query},
        {"recall@10": (mean, mean, mean)},
        n,
        0,
        np.zeros(50),
        np.arange(n),
        np.zeros((n, 50), dtype=int),
        np.zeros((n, 50), dtype=bool),
    )
    return EvalResult(name, {("related_cold", "curated"): task}, None, "test", is_floor=is_floor)


def test_random_is_never_the_best_baseline():
    ours = _result("ours", np.full(10, 0.3))
    floor = _result("random", np.full(10, 0.2), is_floor=True)
    weak = _result("weak", np.full(10, 0.1))
    assert best_baseline([ours, floor, weak], "ours") == "weak"
    assert best_baseline([ours, floor], "ours") is None


def test_the_demo_reads_the_comparison_by_the_reports_ci_rule():
    """A higher point estimate whose CI includes 1 is not a win (the demo said 'beats')."""
    from pinclip.cli.demo import RUNS, verdict_line

    rng = np.random.default_rng(0)
    noisy = rng.random(12)
    ours = _result(RUNS[0][1], np.clip(noisy + 0.02, 0, 1))
    base = _result(RUNS[1][1], noisy[::-1].copy())
    assert (
        ours.get("related_cold", "curated").summary["recall@10"][0]
        > base.get("related_cold", "curated").summary["recall@10"][0]
    )
    line = verdict_line([ours, base], "curated")
    assert "not distinguishable from the λ=0 run (the CI includes 1)" in line, line
    clear = _result(RUNS[0][1], np.clip(noisy[::-1] + 0.5, 0, 1))
    assert "above the λ=0 run (the CI excludes 1)" in verdict_line([clear, base], "curated")


def test_zero_padded_halves_are_na_with_the_reason_not_a_floor_score():
    from pinclip.evaluate.baselines.pretrained import ConcatEmbedder

    reasons = ConcatEmbedder.not_applicable
    assert set(reasons) == {"text_to_image", "image_to_text"}
    assert all("zero-padded" in why for why in reasons.values())


def test_a_split_too_small_to_mean_anything_is_warned_about(caplog):
    from pinclip.graph.bipartite import PinBoardGraph
    from pinclip.graph.splits import split_pins

    pins = np.arange(60)  # a 60-pin catalog: 10 boards of 6 pins
    graph = PinBoardGraph.from_indices(pins, np.arange(10), pins, pins // 6)
    with caplog.at_level(logging.WARNING, logger="pinclip"):
        split = split_pins(graph, cold_frac=0.1, val_frac=0.05, seed=0)
    assert len(split.val) == 3
    assert any("only 3 val pins" in r.getMessage() for r in caplog.records), caplog.text
    assert any("only 6 cold pins" in w for w in split.too_small())
