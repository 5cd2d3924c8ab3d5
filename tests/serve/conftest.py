"""Tiny model + tiny synthetic catalog + its embeddings and index, built once per session."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pinclip.data.builders.synthetic import build_synthetic_catalog
from pinclip.model import PinCLIP
from pinclip.serve import build_index, embed_catalog


@pytest.fixture(scope="session")
def serve_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def catalog_dir(serve_root) -> Path:
    root = serve_root / "catalog"
    build_synthetic_catalog(root, pins=96, seed=0, size=32, progress=False)
    return root


@pytest.fixture(scope="session")
def model_dir(serve_root) -> Path:
    model = PinCLIP.from_preset("tiny", pretrained=False, seed=0)
    return model.save_pretrained(serve_root / "model")


@pytest.fixture(scope="session")
def embeddings(serve_root, model_dir, catalog_dir) -> Path:
    return embed_catalog(model_dir, catalog_dir, serve_root / "emb", batch_size=16, part_size=32)


@pytest.fixture(scope="session")
def index_dir(serve_root, embeddings, catalog_dir) -> Path:
    out = serve_root / "index"
    build_index(embeddings, out, catalog_dir=catalog_dir)
    return out


def png_bytes(size: int = 48, color: tuple[int, int, int] = (200, 30, 30), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(color, 30, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
