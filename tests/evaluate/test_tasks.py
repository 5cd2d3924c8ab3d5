"""Every registered evaluation task, run alone on the tiny split (one parametrised test
over `EVAL_TASKS`, as timm tests every registered model), and a task plugged in."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.evaluate.baselines import create_baseline
from pinclip.evaluate.data import EvalData
from pinclip.evaluate.tasks import (
    DEPTH,
    EVAL_TASKS,
    TASKS,
    Task,
    evaluate_embedder,
    task_relevances,
)
from pinclip.registry import Entry
from pinclip.retrieval import related_pins_hits, related_pins_topk


@pytest.fixture(scope="module")
def data(tiny_run) -> EvalData:
    """The tiny run's split with half its cold pins image-only, so every task has queries."""
    data = EvalData.from_run(tiny_run)
    textless = copy.copy(data)
    textless.catalog = copy.copy(data.catalog)
    pins = data.catalog.pins.copy()
    blank = np.zeros(data.n_pins, dtype=bool)
    blank[data.split.cold[::2]] = True
    pins.loc[blank, ["title", "description"]] = None
    textless.catalog.pins = pins
    return textless


@pytest.mark.parametrize("task", EVAL_TASKS.names())
def test_every_registered_task_scores_under_its_relevances(task, data):
    result = evaluate_embedder(
        create_baseline("random", dim=16), data, n_resamples=50, tasks=[task]
    )
    assert result.skipped == {}
    expected = task_relevances(task, tuple(data.relevances))
    assert list(result.results) == [(task, rel) for rel in expected]
    for rel in expected:
        res = result.get(task, rel)
        assert res.n_queries > 0 and len(res.retrieved) == len(res.hits) == res.n_queries
        assert 0 < res.retrieved.shape[1] <= DEPTH  # fewer candidates than DEPTH: all of them
        mean, low, high = res.summary["recall@10"]
        assert 0 <= low <= mean <= high <= 1
    assert TASKS[task] == EVAL_TASKS.get(task).label


def test_the_cli_help_lists_every_task():
    result = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for name in EVAL_TASKS.names():
        assert f"{name}:" in result.output


def test_a_plugged_in_task_is_scored_and_listed(monkeypatch, data):
    def warm_image(run):  # related pins from a warm pin's image alone
        pins = run.data.split.warm
        top = related_pins_topk(run.emb.image[pins], run.emb.pin, pins, DEPTH)
        graph = run.data.relevance_graph("all")
        return {"all": (pins, top, *related_pins_hits(graph, pins, top))}

    entry = Entry("related_warm_image", Task(warm_image, "related pins, warm (image only)"))
    monkeypatch.setitem(EVAL_TASKS._entries, entry.name, entry)
    assert TASKS["related_warm_image"] == "related pins, warm (image only)"
    result = evaluate_embedder(create_baseline("random", dim=16), data, n_resamples=50)
    assert result.get("related_warm_image", "all").n_queries > 0
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_embedder(create_baseline("random"), data, tasks=["related_warm_imag"])
