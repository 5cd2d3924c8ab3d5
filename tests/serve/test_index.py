"""faiss index: recall against exact search, atomic save, add without rebuild."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pinclip.data import catalog as catalog_module
from pinclip.data.catalog import MAPPED_DIR
from pinclip.serve import PinIndex, build_index, read_embeddings
from pinclip.serve.index import META_FILE, factory_string
from pinclip.serve.index_kinds import INDEX_KINDS


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


# Every registered kind (the table the CLI's --kind help reads), and a factory string of one's own.
@pytest.mark.parametrize("kind", [*INDEX_KINDS.names(), "IVF{nlist},Flat"])
def test_streamed_build_of_every_kind_and_adds_that_copy_nothing(
    tmp_path, embeddings, kind, monkeypatch
):
    # 96 pins streamed 10 at a time: the same recall check and ids as one in-memory pass.
    index, info = build_index(embeddings, tmp_path / "i", kind=kind, batch_rows=10)
    assert info["count"] == len(index) == 96 and 0.5 <= info["recall@10"] <= 1
    assert info["kind"] == kind and info["factory"] == factory_string(kind, 96, index.dim)
    assert info["bytes_per_vector"] > 0
    ids, emb = read_embeddings(embeddings)
    assert index.search(emb["pin_emb"][7:8], 1)[0][0].row == 7
    meta = index.meta
    row = index.add("fresh", emb["pin_emb"][3] + 0.01, title="fresh")
    assert index.meta is meta and len(meta) == 96  # the catalog rows were not copied
    assert index.pin(row)["title"] == "fresh" and index.field(3, "pin_id") == ids[3]
    again = PinIndex.load(tmp_path / "i")
    assert again.info["search_params"] == info["search_params"]
    assert again.search(emb["pin_emb"][7:8], 1)[0][0].row == 7
    # memory-mapped (what `serve` loads): the vectors and the metadata's Arrow copy as file
    # pages, the same hits, pins and vectors; added pins go beside them
    monkeypatch.setattr(catalog_module, "MAPPED_MIN_ROWS", 1)
    mapped = PinIndex.load(tmp_path / "i", mmap=True)
    assert (tmp_path / "i" / MAPPED_DIR / f"{META_FILE}.arrow").is_file()
    pd.testing.assert_frame_equal(mapped.meta, again.meta)
    hits = lambda idx: [(h.row, round(h.score, 5)) for h in idx.search(emb["pin_emb"][:8], 5)[0]]  # noqa: E731
    assert hits(mapped) == hits(again)
    assert np.array_equal(mapped.vector(5), again.vector(5))
    row = mapped.add("fresh", emb["pin_emb"][3] + 0.01, title="fresh")
    assert mapped.search((emb["pin_emb"][3] + 0.01)[None], 1)[0][0].row == row
    assert mapped.rows["fresh"] == row and mapped.rows[ids[5]] == 5


def test_unknown_kind_is_a_clear_error(tmp_path, embeddings):
    from pinclip.errors import PinclipError

    with pytest.raises(PinclipError, match="not a faiss index_factory string"):
        build_index(embeddings, tmp_path / "x", kind="IVFbogus")


def test_added_pins_are_found_in_exact_search_order():
    # What a served demo index meets: added pins are out of the catalog's distribution (an
    # upload unlike every catalog image) and image queries sit a modality gap away from the
    # pin embeddings, so scores are close. Inserted into the HNSW graph, the added pins link
    # mostly to each other and a search (efSearch 64) misses some although they are the
    # exact best matches. Every added pin must be found where exact search ranks it.
    import pandas as pd

    from pinclip.serve.index import PIN_FIELDS, make_index, normalize

    rng = np.random.default_rng(1)
    n, d, n_added = 2000, 32, 60
    centers = rng.normal(size=(20, d))
    catalog = normalize(centers[rng.integers(0, 20, n)] + 0.8 * rng.normal(size=(n, d)))
    meta = pd.DataFrame({name: [""] * n for name in PIN_FIELDS})
    meta["pin_id"] = [f"c{i}" for i in range(n)]
    meta["boards"] = [[] for _ in range(n)]
    boards = pd.DataFrame({"board_id": [], "title": []})
    index = PinIndex(make_index(catalog, "hnsw"), meta, boards, {"kind": "hnsw"})
    added = normalize(rng.normal(size=d) + 1.2 * rng.normal(size=(n_added, d)))
    rows = [index.add(f"a{i}", v) for i, v in enumerate(added)]
    gap = rng.normal(size=d)
    queries = normalize(
        added + 1.2 * gap / np.linalg.norm(gap) + 0.2 * rng.normal(size=added.shape)
    )
    everything = np.concatenate([catalog, added])
    exact = np.argsort(-(queries @ everything.T), axis=1, kind="stable")[:, :10]
    got = index.search(queries, 10)
    for i, (truth, hits) in enumerate(zip(exact, got, strict=True)):
        want = [r for r in truth if r >= n]  # the added pins of the exact top 10, in order
        found = [h.row for h in hits if h.row >= n]
        assert found[: len(want)] == want, f"query {i}: added pins {found} vs exact {want}"
    assert sum(r in exact[i] for i, r in enumerate(rows)) >= n_added // 2  # not vacuous


def test_the_cli_help_lists_every_registered_kind():
    from typer.testing import CliRunner

    from pinclip.cli import app

    result = CliRunner().invoke(app, ["index", "build", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for entry in INDEX_KINDS:
        assert f"{entry.name}: {entry.help}" in " ".join(result.output.split())
