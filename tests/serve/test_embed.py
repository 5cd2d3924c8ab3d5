"""Catalog embedding: parquet schema, resume after an interrupted run, ray engine."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinclip.serve import TorchEmbedder, embed_catalog, read_embeddings
from pinclip.serve.embed import MANIFEST_FILE, PARTS_DIR


def test_embeddings_file_schema_and_values(embeddings, model_dir, catalog_dir):
    table = pq.read_table(embeddings)
    assert table.num_rows == 96
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


@pytest.mark.slow
def test_ray_engine_matches_local(tmp_path, model_dir, catalog_dir, embeddings):
    path = embed_catalog(
        model_dir,
        catalog_dir,
        tmp_path / "ray",
        engine="ray",
        workers=2,
        batch_size=16,
        part_size=48,
    )
    ids, emb = read_embeddings(path)
    ref_ids, ref = read_embeddings(embeddings)
    assert ids == ref_ids
    np.testing.assert_allclose(emb["pin_emb"], ref["pin_emb"], atol=1e-4)
