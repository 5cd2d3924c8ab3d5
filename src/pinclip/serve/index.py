"""A faiss ANN index over pin embeddings, with the pins' metadata alongside.

Vectors are L2-normalised and compared by inner product (= cosine). HNSW is the default
(no training, items can be added at any time); IVF-PQ compresses large catalogs. The index
directory is written to a temp directory and renamed into place, so a crash mid-save never
leaves a half-written index. Faiss ids are row numbers of `meta.parquet`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

INDEX_FILE = "index.faiss"
META_FILE = "meta.parquet"
BOARDS_FILE = "boards.parquet"
INFO_FILE = "index.json"
EMBEDDING_KEY = "pin_emb"  # what the index holds; queries may be image_emb / text_emb


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def make_index(vectors: np.ndarray, kind: str = "hnsw", *, seed: int = 0) -> faiss.Index:
    """An inner-product index over normalised `vectors` ([N, D] float32), ids = row numbers."""
    n, d = vectors.shape
    if kind == "hnsw":
        base = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
        base.hnsw.efSearch = 64
    elif kind == "ivfpq":
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
        m = next(m for m in (16, 8, 4, 2, 1) if d % m == 0)
        nbits = min(8, int(np.log2(max(n, 2))))  # PQ codebooks need >= 2**nbits training points
        base = faiss.IndexIVFPQ(
            faiss.IndexFlatIP(d), d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT
        )
        base.cp.seed = seed
        base.train(vectors)
        base.nprobe = min(nlist, 16)
    elif kind == "flat":
        base = faiss.IndexFlatIP(d)
    else:
        raise ValueError(f"unknown index kind {kind!r}; use hnsw, ivfpq or flat")
    index = faiss.IndexIDMap2(base)
    index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
    if kind == "ivfpq":
        base.make_direct_map()  # so a pin's vector can be reconstructed for related-pins queries
    return index


def recall_at_k(
    index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int = 10
) -> tuple[float, float]:
    """Recall@k of `index` against exact search over `vectors`, and its queries per second."""
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    k = min(k, len(vectors))
    _, truth = exact.search(queries, k)
    start = time.perf_counter()
    _, got = index.search(queries, k)
    qps = len(queries) / max(time.perf_counter() - start, 1e-9)
    hits = sum(len(set(t) & set(g)) for t, g in zip(truth, got, strict=True))
    return hits / truth.size, qps


@dataclass
class SearchHit:
    row: int
    score: float


class PinIndex:
    """The index, the pin metadata (pin_id, title, image, boards) and a pin_id -> row map."""

    def __init__(
        self, index: faiss.Index, meta: pd.DataFrame, boards: pd.DataFrame, info: dict
    ) -> None:
        self.index, self.meta, self.boards, self.info = (
            index,
            meta.reset_index(drop=True),
            boards,
            info,
        )
        self.rows = {pid: i for i, pid in enumerate(self.meta["pin_id"])}

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        scores, ids = self.index.search(normalize(queries), k)
        return [
            [SearchHit(int(i), float(s)) for s, i in zip(srow, irow, strict=True) if i >= 0]
            for srow, irow in zip(scores, ids, strict=True)
        ]

    def vector(self, row: int) -> np.ndarray:
        return self.index.reconstruct(int(row))

    def add(self, pin_id: str, vector: np.ndarray, **fields: object) -> int:
        """Add one pin without a rebuild; returns its row. Caller holds the write lock."""
        if pin_id in self.rows:
            raise KeyError(f"pin {pin_id!r} already exists")
        row = len(self.meta)
        self.index.add_with_ids(normalize(vector[None]), np.array([row], dtype=np.int64))
        record = {
            "pin_id": pin_id,
            "title": "",
            "image": "",
            "boards": [],
            "source": "added",
        } | fields
        self.meta = pd.concat([self.meta, pd.DataFrame([record])], ignore_index=True)
        self.rows[pin_id] = row
        return row

    def save(self, out: str | Path) -> Path:
        """Write atomically: a temp sibling directory renamed over `out`."""
        out = Path(out)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        faiss.write_index(self.index, str(tmp / INDEX_FILE))
        self.meta.to_parquet(tmp / META_FILE, index=False)
        self.boards.to_parquet(tmp / BOARDS_FILE, index=False)
        (tmp / INFO_FILE).write_text(json.dumps(self.info, indent=2) + "\n")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> PinIndex:
        directory = Path(directory)
        if not (directory / INDEX_FILE).is_file():
            raise FileNotFoundError(
                f"{directory / INDEX_FILE} not found: build one with `pinclip index build`"
            )
        info = json.loads((directory / INFO_FILE).read_text())
        index = faiss.read_index(str(directory / INDEX_FILE))
        if info.get("kind") == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = info.get("ef_search", 64)
        return cls(
            index,
            pd.read_parquet(directory / META_FILE),
            pd.read_parquet(directory / BOARDS_FILE),
            info,
        )


def catalog_metadata(
    pin_ids: list[str], catalog_dir: str | Path | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per pin: title, image path and boards (from the catalog if given); the boards table."""
    meta = pd.DataFrame({"pin_id": pin_ids, "title": "", "image": "", "source": "catalog"})
    meta["boards"] = [[] for _ in pin_ids]
    boards = pd.DataFrame({"board_id": pd.Series(dtype=str), "title": pd.Series(dtype=str)})
    if catalog_dir is None:
        return meta, boards
    from pinclip.data.catalog import read_catalog

    catalog, _ = read_catalog(catalog_dir, check_images=False)
    pins = catalog.pins.assign(pin_id=catalog.pins["pin_id"].astype(str)).set_index("pin_id")
    unknown = [p for p in pin_ids if p not in pins.index]
    if unknown:
        raise ValueError(
            f"{len(unknown)} embedded pins are not in catalog {catalog_dir} (e.g. {unknown[:3]}); "
            "embed and index the same catalog"
        )
    meta["title"] = pins.loc[pin_ids, "title"].fillna("").astype(str).to_numpy()
    meta["image"] = pins.loc[pin_ids, "image"].astype(str).to_numpy()
    edges = catalog.edges.astype({"pin_id": str, "board_id": str})
    by_pin = edges.groupby("pin_id")["board_id"].apply(list)
    meta["boards"] = [by_pin.get(p, []) for p in pin_ids]
    boards = catalog.boards[["board_id", "title"]].astype(str)
    return meta, boards


def build_index(
    embeddings: str | Path,
    out: str | Path,
    *,
    kind: str = "hnsw",
    catalog_dir: str | Path | None = None,
    recall_queries: int = 1000,
    seed: int = 0,
) -> tuple[PinIndex, dict]:
    """Build, check recall@10 against exact search on a sample of pins, save atomically."""
    from .embed import read_embeddings

    pin_ids, emb = read_embeddings(embeddings)
    if len(set(pin_ids)) != len(pin_ids):
        raise ValueError(f"{embeddings}: duplicate pin_id values; re-run `pinclip embed`")
    vectors = normalize(emb[EMBEDDING_KEY])
    start = time.perf_counter()
    index = make_index(vectors, kind, seed=seed)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(vectors), size=min(recall_queries, len(vectors)), replace=False)
    recall, qps = recall_at_k(index, vectors, vectors[sample], k=10)
    meta, boards = catalog_metadata(pin_ids, catalog_dir)
    info = {
        "kind": kind,
        "dim": int(vectors.shape[1]),
        "count": len(pin_ids),
        "recall@10": recall,
        "qps": qps,
        "build_seconds": build_s,
        "ef_search": 64,
        "embeddings": str(embeddings),
        "catalog": str(Path(catalog_dir).resolve()) if catalog_dir else None,
    }
    pin_index = PinIndex(index, meta, boards, info)
    pin_index.save(out)
    return pin_index, info
