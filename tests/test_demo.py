"""`pinclip demo` end to end on a tiny catalog and the tiny preset (the real one is `make demo`)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from pinclip.cli import app

pytestmark = pytest.mark.slow


def test_demo_trains_both_compares_reports_and_prints_serve_command(tiny_catalog, tmp_path):
    catalog = tiny_catalog
    configs = tmp_path / "configs"
    configs.mkdir()
    for name, nbr in (("emoji-small.yaml", 1.0), ("emoji-clip-only.yaml", 0.0)):
        cfg = {
            "run_dir": str(tmp_path / name.removesuffix(".yaml")),
            "max_steps": 4,
            "batch_size": 16,
            "tensorboard": False,
            "threads": 1,
            "data": {
                "catalog": str(catalog),
                "build_if_missing": None,
                "cache_dir": str(tmp_path / "cache"),
            },
            "model": {"preset": "tiny"},
            "loss": {"nbr_weight": nbr},
            "optim": {"warmup_steps": 1},
        }
        (configs / name).write_text(yaml.safe_dump(cfg))

    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--configs",
            str(configs),
            "--report",
            str(tmp_path / "report"),
            "--open-clip",
            str(tmp_path / "no-open-clip"),
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Cold-start related pins" in out
    verdict = " ".join(out[out.index("PinCLIP on cold-start Recall@10") :].split())
    assert "for the λ=0 run" in verdict and "(the CI " in verdict  # the report's CI rule
    # no terminal here: plain progress lines say where the demo is (training, evaluation, serving)
    assert "train 4/4 (100%)" in out and "demo: evaluation" in out
    assert "evaluate lite0" in out and "embed the catalog for serving" in out
    assert (tmp_path / "report" / "report.md").is_file()
    assert (tmp_path / "emoji-small" / "serving").is_dir()
    flat = " ".join(out.split())  # Rich wraps long paths over several lines
    assert flat.endswith("(then open http://127.0.0.1:8000/)")
    assert flat.rindex("serve the demo model: pinclip serve") > flat.rindex("demo finished in")
