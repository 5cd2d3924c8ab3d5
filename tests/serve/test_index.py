"""faiss index: recall against exact search, atomic save, add without rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from pinclip.serve import PinIndex, build_index, read_embeddings


def test_hnsw_recall_metadata_and_reload(index_dir, embeddings):
    index = PinIndex.load(index_dir)
    assert index.info["kind"] == "hnsw" and index.info["recall@10"] >= 0.95
    assert len(index) == 96 and index.meta["title"].str.len().gt(0).all()
    assert index.meta["boards"].map(len).gt(0).any()
    ids, emb = read_embeddings(embeddings)
    hits = index.search(emb["pin_emb"][:5], 3)
    assert [h[0].row for h in hits] == [0, 1, 2, 3, 4]  # each pin is its own nearest neighbour


def test_ivfpq_and_add_without_rebuild(tmp_path, embeddings):
    index, info = build_index(embeddings, tmp_path / "ivf", kind="ivfpq")
    assert 0 <= info["recall@10"] <= 1
    vector = np.random.default_rng(0).normal(size=index.dim).astype(np.float32)
    row = index.add("new-pin", vector, title="new")
    assert index.search(vector[None], 1)[0][0].row == row
    index.save(tmp_path / "ivf")
    again = PinIndex.load(tmp_path / "ivf")
    assert len(again) == 97 and again.rows["new-pin"] == 96
    assert again.vector(96).shape == (index.dim,)
    assert not list(tmp_path.glob(".ivf.*"))  # no temp directories left behind
    with pytest.raises(KeyError):
        again.add("new-pin", vector)


@pytest.mark.parametrize("kind", ["ivfsq8", "ivfpq", "IVF{nlist},Flat"])
def test_streamed_build_of_every_kind_and_adds_that_copy_nothing(tmp_path, embeddings, kind):
    # 96 pins streamed 10 at a time: the same recall check and ids as one in-memory pass.
    index, info = build_index(embeddings, tmp_path / "i", kind=kind, batch_rows=10)
    assert info["count"] == len(index) == 96 and 0.5 <= info["recall@10"] <= 1
    assert info["bytes_per_vector"] > 0 and info["factory"].startswith("IVF")
    ids, emb = read_embeddings(embeddings)
    assert index.search(emb["pin_emb"][7:8], 1)[0][0].row == 7
    meta = index.meta
    row = index.add("fresh", emb["pin_emb"][3] + 0.01, title="fresh")
    assert index.meta is meta and len(meta) == 96  # the catalog rows were not copied
    assert index.pin(row)["title"] == "fresh" and index.field(3, "pin_id") == ids[3]
    again = PinIndex.load(tmp_path / "i")
    assert again.info["search_params"] == info["search_params"]


def test_unknown_kind_is_a_clear_error(tmp_path, embeddings):
    from pinclip.errors import PinclipError

    with pytest.raises(PinclipError, match="not a faiss index_factory string"):
        build_index(embeddings, tmp_path / "x", kind="IVFbogus")
