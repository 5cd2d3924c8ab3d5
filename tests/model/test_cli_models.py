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
