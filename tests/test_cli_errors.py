"""The CLI's one error rule: a PinclipError is one `error:` line and exit 2; anything else
is a bug and keeps its traceback (exit 1), never hidden behind an `error:` line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.errors import PinclipError


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["train", "optim.lrr=1"], "Did you mean 'optim.lr'"),  # ConfigError
        (["train", "model.overrides.image.dpeth=3"], "Did you mean 'image.depth'"),
        (["evaluate", "{tmp}/not-a-run"], "not a run dir"),  # NotFoundError
        (["index", "build", "{tmp}/missing.parquet", "{tmp}/index"], "pinclip embed"),
        (["compare", "nosuch-baseline", "--split-from", "{tmp}"], None),
    ],
)
def test_expected_failures_are_one_error_line_and_exit_2(args, says, tmp_path):
    result = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit(2), not a crash
    assert len(_error_lines(result.output)) == 1, result.output
    assert "Traceback" not in result.output
    if says:
        assert says in " ".join(result.output.split())


def test_a_bug_is_not_hidden_behind_an_error_line(monkeypatch):
    import pinclip.train

    def broken(*args, **kwargs):
        raise ValueError("a bug: nothing the user passed is wrong")  # a builtin, not PinclipError

    monkeypatch.setattr(pinclip.train, "load_config", broken)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError)  # propagated: typer prints its traceback
    assert not isinstance(result.exception, PinclipError)
    assert not _error_lines(result.output)


def test_a_typo_in_a_config_value_stops_train_before_the_catalog_is_read(monkeypatch):
    """`data.batch=bords` fails in `load_config` (exit 2, one line, the nearest choice), not
    after the catalog, model and feature store are built."""
    import pinclip.graph.catalog_split
    import pinclip.train.data

    def must_not_run(*args, **kwargs):
        raise AssertionError("the catalog was read before the config was checked")

    monkeypatch.setattr(pinclip.graph.catalog_split, "read_catalog", must_not_run)
    monkeypatch.setattr(pinclip.train.data, "load_training_data", must_not_run)
    config = str(Path(__file__).parents[1] / "configs" / "emoji-small.yaml")
    result = CliRunner().invoke(app, ["train", "-c", config, "data.batch=bords"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert len(_error_lines(result.output)) == 1 and "Traceback" not in result.output
    assert "did you mean 'boards'" in " ".join(result.output.split())
