"""`embed --features`: the frozen outputs read from the training's store, not recomputed."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pinclip.data.catalog import read_catalog
from pinclip.model import FeatureStore, PinCLIP
from pinclip.serve import embed_catalog, read_embeddings
from pinclip.serve.embed import EmbeddingsError


@pytest.fixture(scope="module")
def frozen_model(tmp_path_factory):
    """A tiny model with frozen stem and text encoder, and the store of the serve catalog."""
    root = tmp_path_factory.mktemp("stored")
    model = PinCLIP.from_preset(
        "tiny", pretrained=False, freeze_stem=True, freeze_text_encoder=True
    )
    return root, model, model.save_pretrained(root / "model")


def _build_store(root, model, catalog_dir, dtype="fp16", text_compute="fp32"):
    catalog, _ = read_catalog(catalog_dir, check_images=False)
    store = FeatureStore(root, model, dtype=dtype, text_compute=text_compute)
    store.build("images", [catalog.image_path(i) for i in catalog.pins["image"]])
    store.build("texts", catalog.texts())
    return store


@pytest.mark.parametrize(("text_compute", "least"), [("fp32", 0.999), ("int8", 0.99)])
def test_stored_features_embed_like_the_encoders(
    frozen_model, bert_dir, catalog_dir, tmp_path, caplog, text_compute, least
):
    root = tmp_path / text_compute
    _, model, model_dir = frozen_model
    if text_compute == "int8":  # int8 states: a BERT encoder (MiniLM's kind) exports to ONNX
        pytest.importorskip("onnxruntime")
        model = PinCLIP.from_preset(
            "tiny", pretrained=False, freeze_stem=True, freeze_text_encoder=True,
            **{"text.encoder": bert_dir},
        )  # fmt: skip
        model_dir = model.save_pretrained(root / "model")
    _build_store(root / "features", model, catalog_dir, text_compute=text_compute)
    opts = dict(backend="torch", batch_size=16, part_size=48)
    computed = embed_catalog(model_dir, catalog_dir, tmp_path / "computed", **opts)
    with caplog.at_level(logging.INFO, logger="pinclip"):
        stored = embed_catalog(
            model_dir, catalog_dir, tmp_path / "stored", features=root / "features", **opts
        )
    assert "not used" not in caplog.text
    assert "frozen features read from" in caplog.text
    ids_a, a = read_embeddings(computed)
    ids_b, b = read_embeddings(stored)
    assert ids_a == ids_b
    for key in ("image_emb", "text_emb", "pin_emb"):
        cos = (a[key] * b[key]).sum(1)
        assert cos.min() > least, key  # fp16 storage: the same embedding to ~1e-4
        assert not np.array_equal(a[key], b[key])  # ...and truly read from the store


def test_a_store_of_other_features_is_not_used(frozen_model, catalog_dir, tmp_path, caplog):
    root, model, model_dir = frozen_model
    # Another model's store: no features of this model's frozen parts, so every pin is computed.
    other = PinCLIP.from_preset(
        "tiny", pretrained=False, seed=1, freeze_stem=True, freeze_text_encoder=True
    )
    _build_store(tmp_path / "other", other, catalog_dir)
    with caplog.at_level(logging.INFO, logger="pinclip"):
        out = embed_catalog(
            model_dir, catalog_dir, tmp_path / "emb", backend="torch", part_size=48,
            features=tmp_path / "other",
        )  # fmt: skip
    assert "holds no features" in caplog.text
    assert len(read_embeddings(out)[0]) == 96


def test_stored_features_need_the_torch_model(frozen_model, catalog_dir, tmp_path, monkeypatch):
    root, _, model_dir = frozen_model
    from pinclip.serve import embed as embed_module

    class NotTorch:  # what an ONNX export loads as: it takes pixels, not stored features
        pass

    monkeypatch.setattr(embed_module, "load_embedder", lambda *a, **k: NotTorch())
    with pytest.raises(EmbeddingsError, match="--backend torch"):
        embed_catalog(
            model_dir, catalog_dir, tmp_path / "emb", backend="torch", features=root / "features"
        )
