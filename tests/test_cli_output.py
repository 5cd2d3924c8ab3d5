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
