"""Serving a model on a VLM backbone (tiny random Qwen2-VL by path): batched catalog
embedding, the index and HTTP search, `pinclip merge`, and a clear refusal to export ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.errors import InputError
from pinclip.model import PinCLIP, preset_config
from pinclip.serve import PinService, build_index, create_app, embed_catalog, export_onnx
from pinclip.serve.embed import read_embeddings
from pinclip.serve.embedder import TorchEmbedder

from .conftest import png_bytes


@pytest.fixture(scope="module")
def vlm_model_dir(tiny_vlms, tmp_path_factory):
    cfg = preset_config(
        "tiny", **{"backbone": f"hf-vlm:{tiny_vlms['qwen2_vl']}", "image.image_size": 64}
    )
    model = PinCLIP(cfg, seed=0)
    with torch.no_grad():  # trained-looking adapters (LoRA B leaves zero)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.save_pretrained(tmp_path_factory.mktemp("vlm") / "model")


def test_embed_index_and_search_with_a_vlm_backbone(vlm_model_dir, catalog_dir, tmp_path):
    out = embed_catalog(vlm_model_dir, catalog_dir, tmp_path / "emb", batch_size=16, part_size=48)
    ids, emb = read_embeddings(out)
    assert len(ids) == 96
    np.testing.assert_allclose(np.linalg.norm(emb["pin_emb"], axis=1), 1.0, atol=1e-4)
    # batched rows equal the pin embedded alone
    from pinclip.data.catalog import pin_text, read_catalog

    catalog, _ = read_catalog(catalog_dir, check_images=False)
    pin = catalog.pins.set_index(catalog.pins["pin_id"].astype(str)).loc[ids[50]]
    embedder = TorchEmbedder.load(vlm_model_dir)
    direct = embedder.embed_pins(
        embedder.preprocess(catalog.load_image(pin["image"]))[None],
        [pin_text(pin["title"], pin["description"])],
    )
    np.testing.assert_allclose(direct["pin_emb"][0], emb["pin_emb"][50], atol=1e-4)

    build_index(out, tmp_path / "index", catalog_dir=catalog_dir)
    service = PinService.open(tmp_path / "index", vlm_model_dir, store_dir=tmp_path / "store")
    client = TestClient(create_app(service))
    hits = client.get("/v1/search", params={"q": "red", "k": 5})
    assert hits.status_code == 200 and len(hits.json()["results"]) == 5
    image = client.post("/v1/search/image", files={"file": ("a.png", png_bytes(), "image/png")})
    assert image.status_code == 200, image.text


def test_merge_cli_and_onnx_refusal(vlm_model_dir, catalog_dir, tmp_path):
    merged = tmp_path / "merged"
    done = CliRunner().invoke(app, ["merge", str(vlm_model_dir), str(merged)])
    assert done.exit_code == 0, done.output
    a, b = TorchEmbedder.load(vlm_model_dir), TorchEmbedder.load(merged)
    pixels = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(
        b.embed_pins(pixels, ["x", "y"])["pin_emb"],
        a.embed_pins(pixels, ["x", "y"])["pin_emb"],
        atol=1e-4,
    )
    with pytest.raises(InputError, match="vision-language"):
        export_onnx(vlm_model_dir, tmp_path / "onnx", [])
    refused = CliRunner().invoke(app, ["export", str(vlm_model_dir), str(tmp_path / "onnx")])
    assert refused.exit_code == 2 and "vision-language" in refused.output
    assert str(vlm_model_dir.parent) not in refused.output  # names the model, not its path
