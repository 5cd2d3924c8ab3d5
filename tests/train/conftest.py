"""Training-test overrides over the shared tiny catalog (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_overrides(tiny_catalog, tmp_path) -> list[str]:
    """A seconds-long run of the tiny preset: 6 steps, checkpoint and validate every 2."""
    return [
        f"data.catalog={tiny_catalog}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.build_if_missing=null",
        f"run_dir={tmp_path / 'run'}",
        "model.preset=tiny",
        "batch_size=16",
        "max_steps=6",
        "ckpt_every=2",
        "val_every=3",
        "keep_last=2",
        "tensorboard=false",
        "optim.warmup_steps=2",
        "threads=1",
    ]
