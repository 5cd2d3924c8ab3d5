"""MDI builder on a small @iconify-json/mdi tarball made here (never downloaded in tests)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.data.builders import mdi
from pinclip.data.builders.mdi import MdiPackageError, build_mdi_catalog
from pinclip.data.catalog import read_catalog

SQUARE = '<path fill="currentColor" d="M4 4h16v16H4z"/>'
BAR = '<path fill="currentColor" d="M2 10h20v4H2z"/>'
ICONS = {
    "account": SQUARE,
    "account-outline": BAR,
    "account-alert": SQUARE,
    "arrow-left": BAR,
    "arrow-right": BAR,
    "arrow-up-bold": SQUARE,
    "weather-sunny": SQUARE,
    "weather-rainy": BAR,
    "numeric-1": BAR,
    "zzz-uncategorised": SQUARE,
}
CATEGORIES = {
    "Account / User": ["account", "account-outline", "account-alert", "gone-icon"],
    "Arrange": ["arrow-left", "arrow-right", "arrow-up-bold"],
    "Weather": ["weather-sunny", "weather-rainy", "account-alert"],  # many-to-many
    "Alpha / Numeric": ["numeric-1", "old-hidden"],
}


def make_tarball(path: Path, *, name: str = "@iconify-json/mdi") -> Path:
    icons = {n: {"body": b} for n, b in ICONS.items()}
    icons["old-hidden"] = {"body": SQUARE, "hidden": True}
    files = {
        "package.json": {"name": name, "version": "1.2.3", "license": "Apache-2.0"},
        "info.json": {
            "name": "Material Design Icons",
            "author": {
                "name": "Pictogrammers",
                "url": "https://github.com/Templarian/MaterialDesign",
            },
            "license": {"title": "Apache 2.0", "spdx": "Apache-2.0", "url": "https://x/LICENSE"},
        },
        "icons.json": {
            "prefix": "mdi",
            "icons": icons,
            "aliases": {"1": {"parent": "numeric-1"}, "sun-bright": {"parent": "weather-sunny"}},
            "lastModified": 1737398331,
            "width": 24,
            "height": 24,
        },
        "metadata.json": {"categories": CATEGORIES},
    }
    with tarfile.open(path, "w:gz") as tar:
        for fname, obj in files.items():
            data = json.dumps(obj).encode()
            info = tarfile.TarInfo(f"package/{fname}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


ARGS = dict(size=32, user_boards=25, seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    return make_tarball(tmp_path_factory.mktemp("npm") / "iconify-json-mdi-1.2.3.tgz")


@pytest.fixture(scope="module")
def catalog(tarball, tmp_path_factory) -> Path:
    return build_mdi_catalog(tmp_path_factory.mktemp("mdi") / "cat", package=tarball, **ARGS)


def test_pins_are_visible_icons_with_name_words_and_aliases(catalog):
    cat, report = read_catalog(catalog)
    assert report.rejects == []
    pins = cat.pins.set_index("pin_id")
    assert sorted(pins.index) == sorted(ICONS)  # the hidden (deprecated) icon is left out
    assert pins.loc["arrow-up-bold", "title"] == "arrow up bold"
    assert pins.loc["weather-sunny", "description"] == "sun bright"
    assert pins.loc["account-outline", "base_pin_id"] == "account"
    assert pins.loc["account-alert", "categories"] == "Account / User; Weather"
    with Image.open(cat.image_path(pins.loc["account", "image"])) as img:
        gray = np.asarray(img.convert("L"))
    assert gray.shape == (32, 32)
    assert gray[0, 0] == 255 and gray[16, 16] < 50  # black icon on white


def test_curated_boards_are_the_categories_many_to_many(catalog):
    cat, _ = read_catalog(catalog)
    curated = cat.boards[cat.boards["kind"] == "curated"]
    assert sorted(curated["title"]) == sorted(CATEGORIES)
    on = cat.edges.merge(curated, on="board_id").merge(cat.pins, on="pin_id")
    assert sorted(on[on["title_x"] == "Weather"]["pin_id"]) == sorted(
        ["weather-sunny", "weather-rainy", "account-alert"]
    )
    assert (on["pin_id"] == "account-alert").sum() == 2
    assert "zzz-uncategorised" not in set(on["pin_id"])
    assert (on["pin_id"] == "numeric-1").sum() == 1  # the hidden icon's membership is dropped


def test_user_boards_share_pins_and_licence_is_recorded(catalog):
    cat, _ = read_catalog(catalog)
    users = cat.boards[cat.boards["kind"] == "user"]
    assert len(users) == ARGS["user_boards"]
    sizes = cat.edges[cat.edges["board_id"].isin(users["board_id"])].groupby("board_id").size()
    assert sizes.min() >= 2
    meta = json.loads((catalog / "catalog.json").read_text())
    text = json.dumps(meta["attribution"])
    assert "Apache-2.0" in text and "Pictogrammers" in text and "@iconify-json/mdi@1.2.3" in text
    assert meta["counts"]["pins"] == len(ICONS)
    assert meta["stats"]["pins_without_category"] == 1


def test_same_arguments_give_identical_files_other_seed_only_user_boards(
    catalog, tarball, tmp_path
):
    again = build_mdi_catalog(tmp_path / "again", package=tarball, **{**ARGS, "workers": 2})
    for name in ("pins.parquet", "boards.parquet", "pin_board.parquet"):
        assert (again / name).read_bytes() == (catalog / name).read_bytes(), name
    other = build_mdi_catalog(tmp_path / "other", package=tarball, **{**ARGS, "seed": 4})
    assert (other / "pins.parquet").read_bytes() == (catalog / "pins.parquet").read_bytes()
    edges = pd.read_parquet(other / "pin_board.parquet")
    assert not edges.equals(pd.read_parquet(catalog / "pin_board.parquet"))


def test_without_npm_or_tarball_the_error_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(mdi.shutil, "which", lambda _: None)
    with pytest.raises(MdiPackageError, match="npm is not installed.*--package"):
        build_mdi_catalog(tmp_path / "x", **ARGS)
    with pytest.raises(MdiPackageError, match="no such file"):
        build_mdi_catalog(tmp_path / "y", package=tmp_path / "missing.tgz", **ARGS)
    wrong = make_tarball(tmp_path / "other.tgz", name="@iconify-json/other")
    with pytest.raises(MdiPackageError, match="expected @iconify-json/mdi"):
        build_mdi_catalog(tmp_path / "z", package=wrong, **ARGS)


def test_cli_builds_and_reports_a_bad_package_in_one_line(tarball, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    ok = runner.invoke(
        app,
        [
            "catalog",
            "build",
            "mdi",
            str(out),
            "--package",
            str(tarball),
            "--size",
            "16",
            "--user-boards",
            "5",
            "--workers",
            "1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert f"{len(ICONS)} pins" in " ".join(ok.output.split())
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not a tarball")
    failed = runner.invoke(
        app, ["catalog", "build", "mdi", str(tmp_path / "c2"), "--package", str(bad)]
    )
    assert failed.exit_code == 2
    assert "not a readable npm tarball" in " ".join(failed.output.split())
