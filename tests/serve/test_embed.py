"""Catalog embedding: parquet schema, resume after an interrupted run, ray engine."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pinclip.errors import PinclipError
from pinclip.serve import (
    TorchEmbedder,
    embed_catalog,
    iter_embeddings,
    open_embeddings,
    read_embeddings,
)
from pinclip.serve.embed import MANIFEST_FILE, PARTS_DIR


def test_embeddings_dataset_schema_and_values(embeddings, model_dir, catalog_dir):
    dataset = open_embeddings(embeddings)
    assert dataset.count_rows() == 96
    assert len(dataset.files) == 3  # 96 pins in parts of 32, never concatenated
    table = dataset.to_table()
    for key in ("image_emb", "text_emb", "pin_emb"):
        assert pa.types.is_fixed_size_list(table.schema.field(key).type)
        assert table.schema.field(key).type.value_type == pa.float32()
    ids, emb = read_embeddings(embeddings)
    assert len(set(ids)) == 96
    np.testing.assert_allclose(np.linalg.norm(emb["pin_emb"], axis=1), 1.0, atol=1e-4)
    # The job's rows equal a direct embedding of the same pin.
    from pinclip.data.catalog import pin_text, read_catalog

    catalog, _ = read_catalog(catalog_dir, check_images=False)
    pin = catalog.pins.set_index(catalog.pins["pin_id"].astype(str)).loc[ids[40]]
    embedder = TorchEmbedder.load(model_dir)
    direct = embedder.embed_pins(
        embedder.preprocess(catalog.load_image(pin["image"]))[None],
        [pin_text(pin["title"], pin["description"])],
    )
    np.testing.assert_allclose(direct["pin_emb"][0], emb["pin_emb"][40], atol=1e-4)


def test_resume_after_interruption_has_no_duplicates_or_gaps(
    tmp_path, model_dir, catalog_dir, embeddings
):
    out = tmp_path / "emb"
    assert (
        embed_catalog(model_dir, catalog_dir, out, batch_size=16, part_size=32, max_parts=1) is None
    )
    assert len(list((out / PARTS_DIR).glob("part-*.parquet"))) == 1
    with pytest.raises(PinclipError, match="unfinished: 1 of 3 parts"):
        open_embeddings(out)  # a half-done run is never read as if it were the catalog
    # A kill after a part was written but before the manifest recorded it: that part is redone.
    stray = out / PARTS_DIR / "part-00002.parquet"
    stray.write_bytes(b"half-written garbage")
    seen = []
    path = embed_catalog(
        model_dir,
        catalog_dir,
        out,
        batch_size=16,
        part_size=32,
        progress=lambda done, total: seen.append(done),
    )
    assert seen[0] == 32  # resumed: the first part was not embedded again
    ids, emb = read_embeddings(path)
    ref_ids, ref = read_embeddings(embeddings)
    assert ids == ref_ids
    np.testing.assert_allclose(emb["pin_emb"], ref["pin_emb"], atol=1e-5)
    assert (out / MANIFEST_FILE).is_file()


def test_streaming_reads_one_column_in_order(embeddings):
    ids, emb = read_embeddings(embeddings)
    batches = list(iter_embeddings(embeddings, ("pin_emb",), batch_rows=20))
    assert all(b.schema.names == ["pin_emb"] for b in batches)
    assert max(b.num_rows for b in batches) <= 20
    from pinclip.serve.embed import vectors

    np.testing.assert_array_equal(
        np.concatenate([vectors(b["pin_emb"]) for b in batches]), emb["pin_emb"]
    )


def test_output_to_an_fsspec_url(tmp_path, model_dir, catalog_dir, embeddings):
    url = f"file://{tmp_path}/shared/emb"
    assert embed_catalog(model_dir, catalog_dir, url, batch_size=16, part_size=48) == url
    ids, emb = read_embeddings(url)
    ref_ids, ref = read_embeddings(embeddings)
    assert ids == ref_ids
    np.testing.assert_allclose(emb["pin_emb"], ref["pin_emb"], atol=1e-5)


def test_auto_backend_prefers_an_onnx_export_on_cpu(tmp_path, model_dir):
    import shutil

    from pinclip.serve.embedder import resolve_backend

    assert resolve_backend(model_dir, "auto", "cpu") == "torch"  # no export: eager
    copy = shutil.copytree(model_dir, tmp_path / "model")
    (copy / "onnx").mkdir()
    (copy / "onnx" / "export.json").write_text("{}")
    assert resolve_backend(copy, "auto", "cpu") == "onnx"
    assert resolve_backend(copy, "auto", "cuda") == "torch"
    assert resolve_backend(copy, "torch", "cpu") == "torch"
    with pytest.raises(PinclipError, match="unknown backend"):
        resolve_backend(copy, "tensorrt", "cpu")


def test_devices_are_checked(model_dir):
    import torch

    from pinclip.serve import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(PinclipError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PinclipError, match="no CUDA device"):
            resolve_device("cuda")
    # `--device` of evaluate/compare reaches the PinCLIP models through the same check.
    from pinclip.evaluate.baselines.pinclip_model import PinCLIPEmbedder

    assert PinCLIPEmbedder(model_dir, device="cpu").device.type == "cpu"
    with pytest.raises(PinclipError, match="unknown device"):
        PinCLIPEmbedder(model_dir, device="tpu")


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"
)
def test_cuda_embedder_matches_cpu(model_dir, embeddings, catalog_dir):
    from pinclip.serve import catalog_samples

    samples = catalog_samples(catalog_dir, 8)
    cpu, gpu = TorchEmbedder.load(model_dir, "cpu"), TorchEmbedder.load(model_dir, "cuda")
    pixels = np.stack([cpu.preprocess(img) for img, _ in samples])
    texts = [t for _, t in samples]
    a, b = cpu.embed_pins(pixels, texts), gpu.embed_pins(pixels, texts)
    assert (a["pin_emb"] * b["pin_emb"]).sum(1).min() > 0.99  # fp16 autocast


def test_onnx_cuda_request_without_the_provider_falls_back_with_a_warning():
    import onnxruntime as ort

    from pinclip.serve.embedder import onnx_providers

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert onnx_providers("cuda")[0][0] == "CUDAExecutionProvider"
    else:
        with pytest.warns(RuntimeWarning, match="onnxruntime-gpu"):
            assert onnx_providers("cuda") == ["CPUExecutionProvider"]
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
