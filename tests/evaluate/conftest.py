"""A tiny synthetic catalog with curated boards and pin groups, and a tiny trained run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from pinclip.train import load_config, train


@pytest.fixture(scope="session")
def eval_catalog(tiny_catalog, tmp_path_factory) -> Path:
    """The shared tiny catalog (240 pins, 50 boards) with the first 12 boards marked
    curated and a `group` per pin."""
    root = tmp_path_factory.mktemp("eval-catalog") / "syn"
    shutil.copytree(tiny_catalog, root)
    boards = pd.read_parquet(root / "boards.parquet")
    boards.loc[:11, "kind"] = "curated"
    boards.to_parquet(root / "boards.parquet", index=False)
    pins = pd.read_parquet(root / "pins.parquet")
    pins["group"] = "topic-" + (pins["topic"] // 10).astype(str)
    pins.to_parquet(root / "pins.parquet", index=False)
    return root


def tiny_run_overrides(catalog: Path, run_dir: Path, cache: Path) -> list[str]:
    return [
        f"data.catalog={catalog}",
        f"data.cache_dir={cache}",
        "data.build_if_missing=null",
        f"run_dir={run_dir}",
        "model.preset=tiny",
        "batch_size=16",
        "max_steps=4",
        "val_every=2",
        "ckpt_every=4",
        "keep_last=1",
        "tensorboard=false",
        "optim.warmup_steps=1",
        "threads=1",
    ]


@pytest.fixture(scope="session")
def tiny_run(eval_catalog, tmp_path_factory) -> Path:
    """A seconds-long tiny-preset PinCLIP run on the eval catalog."""
    base = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, tiny_run_overrides(eval_catalog, base / "run", base / "cache"))
    train(cfg)
    return base / "run"


@pytest.fixture(scope="session")
def open_clip_run(eval_catalog, tmp_path_factory):
    """(config, run dir) of a 12-step open_clip run on the eval catalog."""
    from pinclip.evaluate.baselines.open_clip import train_open_clip

    tmp = tmp_path_factory.mktemp("open-clip")
    overrides = tiny_run_overrides(eval_catalog, tmp / "pc", tmp / "cache")
    cfg = load_config(None, [*overrides, "batch_size=32", "max_steps=12", "optim.lr=2e-3"])
    return cfg, train_open_clip(cfg, tmp / "oc")
