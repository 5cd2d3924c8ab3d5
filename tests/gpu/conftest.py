"""A tiny synthetic catalog and seconds-long run overrides for the GPU suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclip.data.builders.synthetic import build_synthetic_catalog


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalog") / "syn"
    build_synthetic_catalog(root, pins=240, seed=0, size=32, progress=False)
    return root


@pytest.fixture
def tiny_overrides(tiny_catalog, tmp_path) -> list[str]:
    return [
        f"data.catalog={tiny_catalog}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.build_if_missing=null",
        f"run_dir={tmp_path / 'run'}",
        "model.preset=tiny",
        "model.overrides.dropout=0.1",  # dropout on the GPU: its RNG must resume too
        "batch_size=16",
        "tensorboard=false",
        "optim.warmup_steps=2",
    ]
