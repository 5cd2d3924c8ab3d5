"""Small builder outputs shared by the builder tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclip.data.builders.emoji import build_emoji_catalog
from pinclip.data.builders.synthetic import build_synthetic_catalog

EMOJI_ARGS = dict(limit=40, user_boards=30, size=32, seed=7, progress=False)
SYNTH_ARGS = dict(pins=1100, seed=11, size=32, progress=False)


@pytest.fixture(scope="session")
def emoji_args() -> dict:
    return dict(EMOJI_ARGS)


@pytest.fixture(scope="session")
def synth_args() -> dict:
    return dict(SYNTH_ARGS)


@pytest.fixture(scope="session")
def emoji_catalog(tmp_path_factory) -> Path:
    return build_emoji_catalog(tmp_path_factory.mktemp("emoji") / "cat", workers=1, **EMOJI_ARGS)


@pytest.fixture(scope="session")
def synthetic_catalog(tmp_path_factory) -> Path:
    return build_synthetic_catalog(
        tmp_path_factory.mktemp("synth") / "cat", workers=1, **SYNTH_ARGS
    )
