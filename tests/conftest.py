"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclip.data.builders.synthetic import build_synthetic_catalog


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    """The one tiny synthetic catalog (240 pins, seed 0, 32 px), built once per session.

    Shared by training, evaluation, the demo and the fault tests: treat it as read-only
    (copy it with `shutil.copytree` to change it)."""
    root = tmp_path_factory.mktemp("catalog") / "syn"
    build_synthetic_catalog(root, pins=240, seed=0, size=32, progress=False)
    return root
