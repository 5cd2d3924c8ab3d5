"""`pinclip index export` to Qdrant (embedded local mode) and LanceDB (embedded): payloads,
named vectors, and the same top-k as the faiss index and exact search."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.errors import MissingExtraError, PinclipError
from pinclip.serve import PinIndex, read_embeddings
from pinclip.serve.vectordb import VectorStore, check_export, export_vectors


@pytest.mark.parametrize("target", ["qdrant", "lancedb"])
def test_export_holds_payload_named_vectors_and_the_same_top_k(
    target, tmp_path, embeddings, index_dir, catalog_dir
):
    store = VectorStore(target, "pins", path=str(tmp_path / target))
    assert export_vectors(embeddings, store, catalog_dir=catalog_dir, batch_rows=40) == 96
    ids, emb = read_embeddings(embeddings)
    index = PinIndex.load(index_dir)
    row = 17
    if target == "qdrant":
        client = store.qdrant()
        point = client.retrieve("pins", [row], with_vectors=True)[0]
        client.close()
        payload, named = point.payload, point.vector
    else:
        table = store.lancedb().open_table("pins").to_arrow().to_pylist()
        payload = named = table[row]
    assert payload["pin_id"] == ids[row]
    assert payload["title"] == index.field(row, "title") != ""
    assert sorted(payload["boards"]) == sorted(index.field(row, "boards"))
    for key in ("image_emb", "text_emb", "pin_emb"):
        np.testing.assert_allclose(named[key], emb[key][row], atol=1e-5)
    # The same searches, three ways: the database, the faiss index, exact search.
    check = check_export(embeddings, store, queries=50, index_dir=index_dir)
    assert check["recall@10_vs_exact"] >= 0.99
    assert check["overlap@10_vs_faiss"] >= 0.95
    # An image query through the image vector finds that pin's own image first.
    client = store.qdrant() if target == "qdrant" else store.lancedb()
    assert store.search(client, emb["image_emb"][row : row + 1], 1, using="image_emb") == [[row]]
    if target == "qdrant":
        client.close()


def test_cli_export_prints_recall(tmp_path, embeddings, index_dir, catalog_dir):
    result = CliRunner().invoke(
        app,
        ["index", "export", str(embeddings), "--to", "lancedb", "--path", str(tmp_path / "db"),
         "--catalog", str(catalog_dir), "--index", str(index_dir), "--check-queries", "20"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "recall@10_vs_exact: 1.0000" in result.output
    assert "overlap@10_vs_faiss" in result.output


def test_bad_targets_are_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(PinclipError, match="unknown vector database"):
        VectorStore("milvus", "pins", path=str(tmp_path))
    with pytest.raises(PinclipError, match="exactly one of --url"):
        VectorStore("qdrant", "pins")
    import sys

    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(MissingExtraError, match=r"pinclip\[qdrant\]"):
        VectorStore("qdrant", "pins", path=str(tmp_path)).qdrant()
