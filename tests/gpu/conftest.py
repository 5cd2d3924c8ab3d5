"""Run overrides for the GPU suite, over the shared tiny catalog (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_overrides(tiny_catalog, tmp_path) -> list[str]:
    """The tiny preset with dropout (its CUDA RNG must resume too), a few steps on the GPU."""
    common = {"data.build_if_missing": "null", "model.preset": "tiny", "batch_size": 16}
    return [
        f"data.catalog={tiny_catalog}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"run_dir={tmp_path / 'run'}",
        *(f"{k}={v}" for k, v in common.items()),
        "model.overrides.dropout=0.1",
        "tensorboard=false",
        "optim.warmup_steps=2",
    ]
