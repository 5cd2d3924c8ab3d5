"""A tiny synthetic catalog shared by the training tests (built once per session)."""

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
