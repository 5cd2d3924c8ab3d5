"""Catalog samples for export, and the whole embed + index chain the demo runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

from pinclip.data.catalog import pin_text, read_catalog

from .embed import embed_catalog


def catalog_samples(
    catalog_dir: str | Path, n: int = 64, seed: int = 0
) -> list[tuple[Image.Image, str]]:
    """`n` random pins (image, text) of a catalog: calibration and parity data for export."""
    catalog, _ = read_catalog(catalog_dir, check_images=False)
    pins = catalog.pins.sample(min(n, len(catalog.pins)), random_state=seed)
    desc = pins["description"] if "description" in pins else [None] * len(pins)
    return [
        (catalog.load_image(img), pin_text(t, d))
        for img, t, d in zip(pins["image"], pins["title"], desc, strict=True)
    ]


def prepare_serving(
    model_dir: str | Path,
    catalog_dir: str | Path,
    out: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    features: str | Path | None = None,
) -> tuple[Path, dict, str]:
    """Embed the catalog (from the training's feature store `features` where it holds the
    pins) and build its index under `out`; returns the index dir, its info and the
    `pinclip serve` command that serves it."""
    from .index import build_index  # faiss: the 'serve' extra

    out = Path(out)
    embeddings = embed_catalog(
        model_dir, catalog_dir, out / "embeddings", progress=progress, features=features
    )
    index_dir = out / "index"
    _, info = build_index(embeddings, index_dir, catalog_dir=catalog_dir)
    command = f"pinclip serve --index {index_dir} --model {model_dir} --catalog {catalog_dir}"
    return index_dir, info, command
