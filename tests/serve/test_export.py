"""ONNX export: parity with PyTorch on catalog pins, int8 choice, loud failure, onnx backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pinclip.serve import (
    OnnxEmbedder,
    ParityError,
    catalog_samples,
    embed_catalog,
    export_onnx,
    read_embeddings,
)


@pytest.fixture(scope="module")
def samples(catalog_dir):
    return catalog_samples(catalog_dir, 16)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, model_dir, samples):
    out = tmp_path_factory.mktemp("onnx") / "export"
    export_onnx(model_dir, out, samples, int8=True)
    return out


def test_export_parity_and_int8_choice(onnx_dir, model_dir):
    from pinclip.serve.embedder import model_fingerprint

    report = json.loads((onnx_dir / "export.json").read_text())
    # the export carries its model's identity, so `serve --model EXPORT` is checked like MODEL
    assert model_fingerprint(onnx_dir) == model_fingerprint(model_dir) is not None
    assert set(report["graphs"]) == {"image", "text", "fusion"}
    assert min(report["parity"].values()) >= 0.99
    t = report["timings_ms"]
    for part in ("image", "text", "fusion"):
        option = report["quantization"][part]
        kept_int8 = report["graphs"][part].endswith(".int8.onnx")
        assert kept_int8 == (option != "fp32")
        assert f"{part}_fp32_ms" in t
        if kept_int8:  # only kept when faster and accurate
            assert t[f"{part}_{option}_int8_ms"] < t[f"{part}_fp32_ms"]
            assert t[f"{part}_{option}_cosine"] >= 0.99
        assert (onnx_dir / report["graphs"][part]).is_file()


def test_static_int8_quantizes_only_the_stem(tmp_path, model_dir, samples):
    import onnx
    import torch

    from pinclip.serve import TorchEmbedder
    from pinclip.serve.export import STEM_PREFIX, export_fp32, quantize_image_static

    ref = TorchEmbedder.load(model_dir)
    pixels = np.stack([ref.preprocess(img) for img, _ in samples]).astype(np.float32)
    export_fp32(ref.model, tmp_path, torch.from_numpy(pixels[:2]), ["a", "b"])
    quantize_image_static(tmp_path / "image.onnx", tmp_path / "q.onnx", pixels, "stem-all")
    nodes = onnx.load(str(tmp_path / "q.onnx")).graph.node
    quantized = [n for n in nodes if n.op_type == "QuantizeLinear"]
    assert quantized
    # int8 weights only in stem convs; the LayerNorm/attention after the stem stay fp32.
    weights = {i.name for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    dq = {n.output[0]: n.input[0] for n in nodes if n.op_type == "DequantizeLinear"}
    int8_weight_users = [n for n in nodes if any(dq.get(i) in weights for i in n.input[1:])]
    assert int8_weight_users and all(n.name.startswith(STEM_PREFIX) for n in int8_weight_users)
    fp32_ops = [n for n in nodes if n.op_type in ("LayerNormalization", "MatMul", "Softmax")]
    assert fp32_ops and not any(set(n.input) & set(dq) for n in fp32_ops)
    with pytest.raises(ValueError, match="unknown image int8 option"):
        quantize_image_static(tmp_path / "image.onnx", tmp_path / "x.onnx", pixels, "nope")


def test_onnx_backend_embeds_like_torch(onnx_dir, tmp_path, catalog_dir, embeddings):
    path = embed_catalog(onnx_dir, catalog_dir, tmp_path / "emb", backend="onnx", part_size=48)
    ids, emb = read_embeddings(path)
    ref_ids, ref = read_embeddings(embeddings)
    assert ids == ref_ids
    for key in ("image_emb", "text_emb", "pin_emb"):
        assert (emb[key] * ref[key]).sum(1).min() >= 0.99
    # Texts of other lengths than the export sample go through the fixed-length fusion graph.
    onnx = OnnxEmbedder(onnx_dir)
    out = onnx.embed_pins(np.zeros((2, 3, 64, 64), np.float32), ["a", "a much longer text " * 5])
    assert out["pin_emb"].shape == (2, 32)


def test_parity_failure_is_loud(tmp_path, model_dir, samples):
    with pytest.raises(ParityError, match="min cosine"):
        export_onnx(model_dir, tmp_path / "bad", samples, threshold=1.01)
    assert not (tmp_path / "bad").exists()


def test_fusion_without_late_path_exports_with_parity(tmp_path, samples):
    """`fusion.late=False` (the first design) ignores the embeddings the fusion graph is fed."""
    from pinclip.model import PinCLIP

    model = PinCLIP.from_preset("tiny", pretrained=False, seed=0, **{"fusion.late": False})
    model_dir = model.save_pretrained(tmp_path / "model")
    export_onnx(model_dir, tmp_path / "export", samples, int8=False)
    report = json.loads((tmp_path / "export" / "export.json").read_text())
    assert min(report["parity"].values()) >= 0.99


def test_cli_export_without_catalog_uses_the_runs_own_catalog(tmp_path, model_dir, catalog_dir):
    """`pinclip export RUN/best OUT` calibrates on the catalog the run trained on (it once
    fell back to data/emoji and told the user to build it)."""
    import shutil

    from typer.testing import CliRunner

    from pinclip.cli import app
    from pinclip.train.config import TrainConfig, save_config

    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "best")
    cfg = TrainConfig()
    cfg.data.catalog = str(catalog_dir)
    save_config(cfg, run / "config.yaml")
    out = tmp_path / "onnx"
    result = CliRunner().invoke(
        app, ["export", str(run / "best"), str(out), "--samples", "8"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert (out / "export.json").is_file()
    alone = CliRunner().invoke(app, ["export", str(model_dir), str(tmp_path / "x")])
    assert alone.exit_code == 2 and "pass --catalog DIR" in alone.output
