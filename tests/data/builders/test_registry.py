"""Every registered catalog builder, through the command generated from its registration.

One parametrised test over `BUILDERS` (as timm tests every registered model): a builder
added to the table is built tiny by `pinclip catalog build NAME`, and its options dataclass
is checked against the builder's keywords, without a line here naming it, except its tiny
command line in `TINY` (a builder without one fails, saying so).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pinclip
from pinclip.cli import app
from pinclip.data.api import build_if_missing
from pinclip.data.builders import BUILDERS, CatalogBuilder, build_synthetic_catalog
from pinclip.data.builders.base import COMMON, option
from pinclip.data.catalog import CatalogError, read_catalog
from pinclip.errors import ConfigError
from pinclip.registry import Entry

from .test_mdi import make_tarball

#: a few seconds' catalog per builder: its flags after `pinclip catalog build NAME OUT`
TINY = {
    "emoji": lambda tmp: (
        "--limit 12 --user-boards 6 --size 16 --seed 1 --workers 1 "
        "--subgroup face-smiling --subgroup face-affection --skin-tones"
    ),
    "mdi": lambda tmp: (
        f"--package {make_tarball(tmp / 'mdi.tgz')} --size 16 --user-boards 5 --workers 1"
    ),
    "synthetic": lambda tmp: "--pins 60 --size 16 --seed 2 --workers 1",
}


@pytest.mark.parametrize("name", BUILDERS.names())
def test_every_registered_builder_builds_a_tiny_catalog_from_its_command(name, tmp_path):
    assert name in TINY, f"add a tiny command line for catalog builder {name!r} to TINY"
    out = tmp_path / "cat"
    args = ["catalog", "build", name, str(out), *TINY[name](tmp_path).split()]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    catalog, report = read_catalog(out)
    assert report.rejects == [] and len(catalog.pins) > 0 and len(catalog.edges) > 0
    assert f"{len(catalog.pins):,} pins" in result.output
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # OUT is not empty now
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize("name", BUILDERS.names())
def test_options_are_the_builders_keywords_with_its_defaults(name):
    builder = BUILDERS.get(name)
    params = inspect.signature(builder.build).parameters
    keywords = {p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {f.name for f in fields(builder.options)} == keywords - set(COMMON)
    for f in fields(builder.options):
        default = params[f.name].default
        if default is not inspect.Parameter.empty:  # a required keyword takes the CLI's default
            assert f.default == default, f"{name}.{f.name}: {f.default!r} != {default!r}"
        assert f.metadata.get("help"), f"{name}.{f.name} has no CLI help"


def test_the_cli_lists_every_builder():
    result = CliRunner().invoke(app, ["catalog", "build", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for entry in BUILDERS:
        assert entry.name in result.output


def test_python_api_checks_options_against_the_dataclass(tmp_path):
    with pytest.raises(ConfigError, match="unknown catalog builder 'emoij'; did you mean 'emoji'"):
        pinclip.build_catalog("emoij", tmp_path / "x")
    with pytest.raises(ConfigError, match="'synthetic' has no option 'pin'; did you mean 'pins'"):
        pinclip.build_catalog("synthetic", tmp_path / "x", pin=10)
    root = pinclip.build_catalog(
        "synthetic", tmp_path / "s", pins=30, size=16, workers=1, progress=False
    )
    assert len(read_catalog(root)[0].pins) == 30


@dataclass(frozen=True)
class TinySyntheticOptions:
    pins: int = option(40, "pins")
    size: int = option(16, "side")
    workers: int | None = option(1, "processes")


def test_build_if_missing_runs_any_registered_builder_with_its_defaults(monkeypatch, tmp_path):
    entry = Entry("tiny", CatalogBuilder(build_synthetic_catalog, TinySyntheticOptions))
    monkeypatch.setitem(BUILDERS._entries, "tiny", entry)
    build_if_missing(tmp_path / "c", "tiny")
    assert len(read_catalog(tmp_path / "c")[0].pins) == 40
    build_if_missing(tmp_path / "c", "no-such-builder")  # present: nothing to build
    with pytest.raises(CatalogError, match="build_if_missing: unknown catalog builder 'tinny'"):
        build_if_missing(tmp_path / "d", "tinny")
    with pytest.raises(CatalogError, match="no such catalog directory.*catalog build emoji"):
        build_if_missing(Path(tmp_path / "d"), None)
