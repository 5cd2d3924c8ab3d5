"""`pinclip evaluate` / `pinclip compare` on a tiny run: JSON with CIs, report, readable plots."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from pinclip.cli import app


def test_evaluate_cli_writes_per_task_json_with_intervals(tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app, ["evaluate", str(tiny_run / "best"), "--out", str(out), "--bootstrap", "200"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    tasks = payload["tasks"]
    assert set(tasks) == {
        "related_cold",
        "related_cold_image",
        "related_warm",
        "text_to_image",
        "image_to_text",
        "board_to_pins",
        "boards_for_cold",
        "new_board_to_pins",
    }
    assert set(tasks["related_cold"]) == {"curated", "all"} and set(tasks["text_to_image"]) == {
        "self",
        "curated",
        "all",
    }
    metrics = tasks["related_cold"]["curated"]["metrics"]
    assert set(metrics) == {"recall@1", "recall@10", "recall@50", "ndcg@10", "map@10", "mrr"}
    low, high = metrics["recall@10"]["ci95"]
    assert low <= metrics["recall@10"]["mean"] <= high


def test_evaluate_cli_bad_path_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2
    assert "--catalog" in result.output


def test_compare_writes_report_and_plots(tiny_run, tmp_path, monkeypatch):
    from pathlib import Path

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{self.name} written without pinclip.atomic")

    monkeypatch.setattr(Path, "write_text", refuse)  # report, results and plots are atomic
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            f"ours={tiny_run}",
            "random",
            "--split-from",
            str(tiny_run),
            "--out",
            str(out),
            "--bootstrap",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert "Headline" in md and "| ours |" in md and "| random |" in md
    headline = next(line for line in md.splitlines() if line.startswith("**Headline:**"))
    assert "besides the random floor" in headline  # random is never "the best baseline"
    assert "only 24 cold pins (< 30)" in md  # the tiny split is flagged
    assert "<table" in (out / "report.html").read_text()
    pngs = {p.name for p in out.glob("*.png")}
    assert {
        "metric_bars_curated.png",
        "metric_bars_all.png",
        "recall_curves.png",
        "loss_curves.png",
        "embedding_map.png",
        "gallery_ours.png",
        "gallery_image_only_ours.png",
    } <= pngs
    for name in pngs:
        with Image.open(out / name) as im:
            assert im.width >= 400 and im.height >= 300
    for png in pngs:
        assert f"]({png})" in md  # every plot is linked from the report
    saved = json.loads((out / "results" / "ours.json").read_text())
    assert saved["model"] == "ours"


def test_the_embedding_map_shows_every_cold_pin_and_a_bounded_seeded_sample():
    from types import SimpleNamespace

    import numpy as np

    from pinclip.evaluate.report import map_pins

    cold = np.arange(0, 5000, 50)
    data = SimpleNamespace(n_pins=5000, split=SimpleNamespace(cold=cold))
    pins = map_pins(data, limit=400, seed=1)
    assert len(pins) == 400 and len(np.unique(pins)) == 400 and np.isin(cold, pins).all()
    assert (pins == map_pins(data, limit=400, seed=1)).all()
    small = SimpleNamespace(n_pins=300, split=SimpleNamespace(cold=cold[:3]))
    assert (map_pins(small, limit=400) == np.arange(300)).all()


def _fake_result(name: str, starts: dict[str, float]):
    """An EvalResult with a recall curve (and Recall@10 = its start) per task (curated)."""
    import numpy as np

    from pinclip.evaluate.tasks import EvalResult, TaskResult

    results = {}
    for task, start in starts.items():
        curve = np.linspace(start, 1.0, 50)
        per_query = {"recall@10": np.full(20, start)}
        results[(task, "curated")] = TaskResult(
            task,
            "curated",
            per_query,
            {"recall@10": (start, start, start)},
            20,
            0,
            curve,
            np.arange(20),
            np.zeros((20, 50), dtype=int),
            np.zeros((20, 50), dtype=bool),
        )
    return EvalResult(name, results, embeddings=None, split_source="test")


def test_recall_curves_name_each_line_by_its_own_model(tmp_path, monkeypatch):
    """A model n/a in one panel must not shift the others' colours, and the legend must name
    every model by the colour of its lines (the 'random' line once started at 0.83)."""
    from matplotlib.colors import to_hex

    from pinclip.evaluate import report

    every = {
        "related_cold": 0.6,
        "related_cold_image": 0.5,
        "related_warm": 0.7,
        "board_to_pins": 0.4,
    }
    results = [
        _fake_result("ours", every),
        _fake_result(
            "text-only", {"related_cold": 0.83, "related_warm": 0.8, "board_to_pins": 0.3}
        ),
        _fake_result("random", {t: 0.05 for t in every}),
    ]
    figures = []
    monkeypatch.setattr(report.plt, "close", lambda fig: figures.append(fig))
    report.plot_recall_curves(results, "curated", tmp_path / "curves.png")
    (fig,) = figures
    colour_of: dict[str, set] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            colour_of.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
            start = {"ours": every, "random": {t: 0.05 for t in every}}.get(line.get_label())
            if start and ax.get_title() == report.TASKS["related_cold"]:
                assert line.get_ydata()[0] == start["related_cold"]
    assert all(len(c) == 1 for c in colour_of.values()), colour_of
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    named = {
        text.get_text(): to_hex(handle.get_color())
        for legend in legends
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    assert named == {name: next(iter(c)) for name, c in colour_of.items()}
