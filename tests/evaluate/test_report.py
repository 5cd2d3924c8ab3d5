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


def test_compare_writes_report_and_plots(tiny_run, tmp_path):
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
    assert "(the CI excludes 1)" in headline or "(the CI includes 1)" in headline
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
