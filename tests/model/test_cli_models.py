"""`pinclip models` lists every preset with parameter counts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.model import PinCLIP, list_presets


@pytest.mark.slow
def test_models_lists_presets_with_parameter_counts() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "140"})
    assert result.exit_code == 0, result.output
    for name in list_presets():
        assert name in result.output
    tiny = PinCLIP.from_preset("tiny", pretrained=False)
    assert f"{tiny.num_parameters() / 1e6:.2f}M" in result.output


@pytest.mark.slow
def test_models_says_which_parts_are_pretrained() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "image stem, text encoder" in rows["small"]
    assert "none (all random)" in rows["tiny"]
    assert "fusion layers and heads always start random" in " ".join(result.output.split())


@pytest.mark.slow
def test_models_lists_the_backbone_families() -> None:
    from pinclip.model.backbones import BACKBONES

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1].strip() for line in result.output.splitlines() if "│" in line]
    assert all(name in rows for name in BACKBONES.names())
