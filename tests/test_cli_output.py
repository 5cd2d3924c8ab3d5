"""What the command line prints: `--version`, and tables that are whole in a log."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

import pinclip
from pinclip.cli import app
from pinclip.cli._errors import print_table


def test_version_prints_and_exits_zero():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == pinclip.__version__


def test_version_from_the_console_script():
    done = subprocess.run(
        [sys.executable, "-m", "pinclip", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == pinclip.__version__


def test_tables_are_not_cut_when_the_output_is_not_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    console = Console(file=out)  # not a terminal: Rich would cut at 80 columns
    assert not console.is_terminal
    table = Table(title="Catalog rows")
    long_path = "/tmp/" + "a-rather-long-folder-name/" * 6 + "pins.parquet"
    for col in ("file", "preset", "kept"):
        table.add_column(col)
    table.add_row(long_path, "preset-with-a-long-name-that-is-not-short", "1,234")
    print_table(console, table)
    text = out.getvalue()
    assert long_path in text and "preset-with-a-long-name-that-is-not-short" in text
    assert "…" not in text


def test_print_config_shows_every_key_resolved_with_its_default_and_doc(tmp_path):
    from pinclip._typed_config import describe
    from pinclip.train.config import TrainConfig

    rows = describe(TrainConfig(), TrainConfig())
    undocumented = [key for key, _, _, doc in rows if not doc]
    assert not undocumented, f"config keys without a doc comment: {undocumented}"
    run_dir = tmp_path / "never-created"
    result = CliRunner().invoke(
        app, ["train", "--print-config", "optim.lr=1e-3", f"run_dir={run_dir}", "loss.kind=siglip"]
    )
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    for key, *_ in rows:
        assert key in lines or f"*{key}" in lines, key  # every key, one row each
    cells = [c.strip() for c in lines["*optim.lr"].split("│")]
    assert cells[2:4] == ["0.001", "0.0005"] and "learning rate" in cells[4]
    assert "*loss.kind" in lines and "siglip" in lines["*loss.kind"]
    assert "epochs" in lines and "*epochs" not in lines  # unchanged keys are not marked
    assert not run_dir.exists()  # printing the config trains nothing


def test_the_cli_starts_without_torch_or_faiss():
    """Help read from registries whose modules import torch (baselines, evaluation tasks) is
    filled in only when --help is asked for (`cli._help.lazy_help`), so every command starts
    fast; the catalog-builder and index-kind tables are read at start, without either."""
    code = "import sys, pinclip.cli; print('torch' in sys.modules, 'faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
