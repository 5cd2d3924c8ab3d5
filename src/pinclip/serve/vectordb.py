"""Hand the embeddings to the vector databases platforms already run: Qdrant and LanceDB.

For catalogs past one machine's RAM (or a platform that already serves vectors), the
embedding parts are streamed, a batch at a time, into a collection/table holding one row
per pin: its payload (pin id, title, boards) and the three embeddings as named vectors
(`image_emb`, `text_emb`, `pin_emb`), so text, image and pin queries all run there as they
do in `pinclip serve`. `check_export` then runs the same queries through the database and
through exact search and reports recall@10 (and the overlap with a faiss index).

Qdrant: `url` for a server (`http://qdrant:6333`), or `path` for its embedded local mode.
LanceDB: a directory or an object-store URI (`s3://bucket/lance`), embedded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pinclip.errors import PinclipError, require

from .embed import KEYS, count_embeddings, iter_embeddings, open_embeddings, vectors
from .index import ExactTopK, catalog_metadata, normalize

TARGETS = ("qdrant", "lancedb")
DEFAULT_COLLECTION = "pins"


@dataclass
class VectorStore:
    """Where the pins went: a Qdrant collection or a LanceDB table."""

    target: str
    collection: str
    path: str | None = None
    url: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise PinclipError(f"unknown vector database {self.target!r}; use one of {TARGETS}")
        if self.target == "qdrant" and bool(self.path) == bool(self.url):
            raise PinclipError("Qdrant needs exactly one of --url (a server) or --path (local)")
        if self.target == "lancedb" and not (self.path or self.url):
            raise PinclipError("LanceDB needs --path (a directory or object-store URI)")

    # ----- connections ----------------------------------------------------------------------
    def qdrant(self):
        qdrant_client = require("qdrant_client", "qdrant", "exporting to Qdrant")
        if self.url:
            return qdrant_client.QdrantClient(url=self.url, api_key=self.api_key)
        return qdrant_client.QdrantClient(path=self.path)

    def lancedb(self):
        lancedb = require("lancedb", "lancedb", "exporting to LanceDB")
        return lancedb.connect(self.path or self.url)

    # ----- search -------------------------------------------------------------------------
    def search(
        self, client, queries: np.ndarray, k: int, using: str = "pin_emb"
    ) -> list[list[int]]:
        """Row numbers (= positions in the embeddings) of the top-k pins per query."""
        out = []
        if self.target == "qdrant":
            for q in queries:
                res = client.query_points(
                    self.collection, query=q.tolist(), using=using, limit=k, with_payload=False
                )
                out.append([int(p.id) for p in res.points])
            return out
        table = client.open_table(self.collection)
        for q in queries:
            res = (
                table.search(q, vector_column_name=using)
                .distance_type("dot")
                .limit(k)
                .select(["row"])
                .to_arrow()
            )
            out.append(res["row"].to_pylist())
        return out


def _batches(
    embeddings: str | Path, catalog_dir: str | Path | None, batch_rows: int
) -> Iterator[tuple[int, pa.RecordBatch, dict[str, list]]]:
    """(first row, batch of pin_id + the three embeddings, payload columns) in pin order."""
    pin_ids = [
        pid
        for b in iter_embeddings(embeddings, ("pin_id",), 1 << 20)
        for pid in b["pin_id"].to_pylist()
    ]
    meta, _ = catalog_metadata(pin_ids, catalog_dir)
    titles, boards = meta["title"].tolist(), meta["boards"].tolist()
    row = 0
    for batch in iter_embeddings(embeddings, ("pin_id", *KEYS), batch_rows):
        n = batch.num_rows
        payload = {
            "title": titles[row : row + n],
            "boards": [[str(b) for b in bs] for bs in boards[row : row + n]],
        }
        yield row, batch, payload
        row += n


def export_vectors(
    embeddings: str | Path,
    store: VectorStore,
    *,
    catalog_dir: str | Path | None = None,
    batch_rows: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Stream every pin into `store` (replacing its collection/table); returns the count."""
    total = count_embeddings(embeddings)
    dim = {k: open_embeddings(embeddings).schema.field(k).type.list_size for k in KEYS}
    report = progress or (lambda done, total: None)
    done = 0
    if store.target == "qdrant":
        done = _export_qdrant(embeddings, store, catalog_dir, batch_rows, dim, total, report)
    else:
        done = _export_lancedb(embeddings, store, catalog_dir, batch_rows, dim, total, report)
    return done


def _export_qdrant(embeddings, store, catalog_dir, batch_rows, dim, total, report) -> int:
    from qdrant_client import models

    client = store.qdrant()
    if client.collection_exists(store.collection):
        client.delete_collection(store.collection)
    client.create_collection(
        store.collection,
        vectors_config={
            key: models.VectorParams(size=dim[key], distance=models.Distance.DOT) for key in KEYS
        },
    )
    done = 0
    for row, batch, payload in _batches(embeddings, catalog_dir, batch_rows):
        arrays = {key: normalize(vectors(batch[key])) for key in KEYS}
        ids = batch["pin_id"].to_pylist()
        points = [
            models.PointStruct(
                id=row + i,
                vector={key: arrays[key][i].tolist() for key in KEYS},
                payload={
                    "pin_id": ids[i],
                    "title": payload["title"][i],
                    "boards": payload["boards"][i],
                },
            )
            for i in range(batch.num_rows)
        ]
        client.upsert(store.collection, points=points, wait=True)
        done += batch.num_rows
        report(done, total)
    client.close()
    return done


def _export_lancedb(embeddings, store, catalog_dir, batch_rows, dim, total, report) -> int:
    schema = pa.schema(
        [
            ("row", pa.int64()),
            ("pin_id", pa.string()),
            ("title", pa.string()),
            ("boards", pa.list_(pa.string())),
            *[(key, pa.list_(pa.float32(), dim[key])) for key in KEYS],
        ]
    )
    done = 0

    def stream() -> Iterator[pa.RecordBatch]:
        nonlocal done
        for row, batch, payload in _batches(embeddings, catalog_dir, batch_rows):
            n = batch.num_rows
            cols = [
                pa.array(np.arange(row, row + n, dtype=np.int64)),
                batch["pin_id"],
                pa.array(payload["title"], pa.string()),
                pa.array(payload["boards"], pa.list_(pa.string())),
            ]
            for key in KEYS:
                x = normalize(vectors(batch[key]))
                cols.append(pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim[key]))
            yield pa.RecordBatch.from_arrays(cols, schema=schema)
            done += n
            report(done, total)

    db = store.lancedb()
    db.create_table(
        store.collection, data=pa.RecordBatchReader.from_batches(schema, stream()), mode="overwrite"
    )
    return done


def check_export(
    embeddings: str | Path,
    store: VectorStore,
    *,
    queries: int = 200,
    k: int = 10,
    index_dir: str | Path | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """The same pin-to-pin searches through the database, exact search and (if given) the
    faiss index: recall@k of the database vs exact, and its top-k overlap with faiss."""
    n = count_embeddings(embeddings)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False))
    picked, row = [], 0
    for batch in iter_embeddings(embeddings, ("pin_emb",)):
        x = normalize(vectors(batch["pin_emb"]))
        inside = rows[(rows >= row) & (rows < row + len(x))]
        picked.append(x[inside - row])
        row += len(x)
    q = np.concatenate(picked)
    exact = ExactTopK(q, k)
    row = 0
    for batch in iter_embeddings(embeddings, ("pin_emb",)):
        x = normalize(vectors(batch["pin_emb"]))
        exact.update(x, row)
        row += len(x)
    client = store.qdrant() if store.target == "qdrant" else store.lancedb()
    got = store.search(client, q, k)
    if store.target == "qdrant":
        client.close()
    truth = [set(r[r >= 0].tolist()) for r in exact.ids]
    result = {"queries": float(len(q)), f"recall@{k}_vs_exact": _overlap(got, truth)}
    if index_dir is not None:
        from .index import PinIndex

        faiss_ids = PinIndex.load(index_dir).index.search(q, k)[1]
        result[f"overlap@{k}_vs_faiss"] = _overlap(
            got, [set(r[r >= 0].tolist()) for r in faiss_ids]
        )
        result[f"faiss_recall@{k}_vs_exact"] = _overlap([list(r) for r in faiss_ids], truth)
    return result


def _overlap(got: list[list[int]], truth: list[set[int]]) -> float:
    hits = sum(len(set(g) & t) for g, t in zip(got, truth, strict=True))
    return hits / max(1, sum(len(t) for t in truth))
