"""A faiss ANN index over pin embeddings, with the pins' metadata alongside.

Vectors are L2-normalised and compared by inner product (= cosine). HNSW is the default
(no training, items can be added at any time); `ivfsq8` holds 10^6+ pins in 26% of the raw
vectors' memory at recall@10 0.98 (BENCHMARKS.md §3b). The index is built
streaming from the embedding parts (one column, one batch at a time); its directory is
written whole (pinclip.atomic), so a crash mid-save never leaves a half-written index.
Faiss ids are row numbers of `meta.parquet` (then of pins added at run time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinclip.atomic import atomic_dir, atomic_write_text, restore_dir
from pinclip.data.catalog import hash_ids, mapped_table
from pinclip.errors import PinclipError

from .index_kinds import DEFAULT_KIND, INDEX_KINDS

INDEX_FILE = "index.faiss"
ADDED_FILE = "added.faiss"  # the exact segment of pins added at run time (PinIndex)
META_FILE = "meta.parquet"
BOARDS_FILE = "boards.parquet"
INFO_FILE = "index.json"
EMBEDDING_KEY = "pin_emb"  # what the index holds; queries may be image_emb / text_emb


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


SEARCH_DEFAULTS = {"efSearch": 64, "nprobe": 16, "k_factor_rf": 64}
TRAIN_ROWS = 160_000  # k-means wants ~39 points a list: 4,096 lists at 10^6


def factory_string(kind: str, n: int, d: int) -> str:
    """The faiss factory string of `kind` (a registered kind or a factory string of one's
    own, `INDEX_KINDS`) for `n` vectors of `d` dims."""
    spec = INDEX_KINDS.get(kind).factory if kind in INDEX_KINDS else kind
    nlist = max(1, min(4 * int(np.sqrt(n)), n // 39, 65_536))
    m = next(m for m in (32, 16, 8, 4, 2, 1) if d % m == 0 and d // m >= 4 or m == 1)
    nbits = min(8, max(1, int(np.log2(max(n, 2)))))  # PQ codebooks need >= 2**nbits points
    return spec.format(nlist=nlist, m=m, nbits=nbits)


def new_index(kind: str, n: int, d: int) -> tuple[faiss.Index, str]:
    """An untrained inner-product index for `n` vectors, ids = row numbers, and its spec."""
    spec = factory_string(kind, n, d)
    try:
        base = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise PinclipError(
            f"index kind {kind!r} ({spec!r}) is not a faiss index_factory string: "
            f"{str(err).splitlines()[-1]}; use one of {', '.join(INDEX_KINDS.names())}"
        ) from None
    top = faiss.downcast_index(base)
    if isinstance(top, faiss.IndexHNSW):
        top.hnsw.efConstruction = 80
    elif not isinstance(top, faiss.IndexRefine):
        ivf = faiss.try_extract_index_ivf(base)
        if ivf is not None:  # so a pin's vector can be read back for related-pins queries
            ivf.make_direct_map()
    return faiss.IndexIDMap2(base), spec


def set_search_params(index: faiss.Index, params: dict[str, float]) -> dict[str, float]:
    """Apply the search-time knobs the index has (efSearch, nprobe, k_factor_rf); returns them."""
    space = faiss.ParameterSpace()
    applied = {}
    for name, value in params.items():
        try:
            space.set_index_parameter(index, name, value)
            applied[name] = value
        except RuntimeError:
            pass  # this kind has no such knob
    return applied


def make_index(vectors: np.ndarray, kind: str = DEFAULT_KIND, *, seed: int = 0) -> faiss.Index:
    """An inner-product index over normalised in-memory `vectors` ([N, D]), ids = row numbers."""
    n, d = vectors.shape
    index, _ = new_index(kind, n, d)
    if not index.is_trained:
        sample = np.random.default_rng(seed).choice(n, min(n, TRAIN_ROWS), replace=False)
        index.train(vectors[np.sort(sample)])
    index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
    set_search_params(index, SEARCH_DEFAULTS)
    return index


def recall_at_k(
    index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int = 10
) -> tuple[float, float]:
    """Recall@k of `index` against exact search over in-memory `vectors`, and its queries/s."""
    truth = ExactTopK(queries, k)
    truth.update(vectors, 0)
    return truth.recall(index)


class ExactTopK:
    """Exact top-k of fixed queries over vectors seen one batch at a time (bounded memory)."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.k = np.ascontiguousarray(queries, np.float32), k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def update(self, batch: np.ndarray, first_row: int) -> None:
        scores = self.queries @ batch.T
        k = min(self.k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        merged_s = np.concatenate([self.scores, np.take_along_axis(scores, top, 1)], axis=1)
        merged_i = np.concatenate([self.ids, top + first_row], axis=1)
        keep = np.argsort(-merged_s, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(merged_s, keep, 1)
        self.ids = np.take_along_axis(merged_i, keep, 1)

    def recall(self, index: faiss.Index) -> tuple[float, float]:
        """Recall@k of `index` on the queries, and its queries per second (one batch call)."""
        start = time.perf_counter()
        _, got = index.search(self.queries, self.k)
        qps = len(self.queries) / max(time.perf_counter() - start, 1e-9)
        truth = [set(row[row >= 0]) for row in self.ids]
        hits = sum(len(t & set(g)) for t, g in zip(truth, got, strict=True))
        return hits / max(1, sum(len(t) for t in truth)), qps


@dataclass
class SearchHit:
    row: int
    score: float


PIN_FIELDS = ("pin_id", "title", "image", "boards", "source", "description", "link")


class RowMap:
    """pin_id -> row without a Python object per pin: the ids' 64-bit hashes sorted (16 bytes
    per pin), a hit confirmed against the id column; ids added at run time in a dict."""

    def __init__(self, ids: pa.ChunkedArray) -> None:
        self.ids = ids
        hashes = hash_ids(ids)
        self.order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[self.order]
        self.added: dict[str, int] = {}

    def get(self, pin_id: str, default: int | None = None) -> int | None:
        if pin_id in self.added:
            return self.added[pin_id]
        h = pd.util.hash_array(np.array([pin_id], dtype=object))[0]
        lo = np.searchsorted(self.hashes, h, side="left")
        hi = np.searchsorted(self.hashes, h, side="right")
        for row in self.order[lo:hi]:
            if self.ids[int(row)].as_py() == pin_id:
                return int(row)
        return default

    def __contains__(self, pin_id: object) -> bool:
        return isinstance(pin_id, str) and self.get(pin_id) is not None

    def __getitem__(self, pin_id: str) -> int:
        row = self.get(pin_id)
        if row is None:
            raise KeyError(pin_id)
        return row

    def __setitem__(self, pin_id: str, row: int) -> None:
        self.added[pin_id] = row


def _arrow_column(series: pd.Series) -> pa.ChunkedArray:
    """A metadata column as Arrow (no copy when the frame was read with pyarrow dtypes)."""
    array = pa.array(series)
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


class PinIndex:
    """The index, the pin metadata (pin_id, title, image, boards) and a pin_id -> row map.

    Catalog rows live in one read-only frame and one ANN index; pins added at run time go to
    an exact (flat) segment beside it, and every search merges both by score. An added pin
    is a cold, often out-of-distribution vector: inserted into an HNSW graph it gets few
    incoming links (the neighbour-selection heuristic prunes it from its neighbours' lists)
    and a search can miss it although it is the best match; an IVF kind files it under
    centroids trained without it. The exact segment finds every added pin in exact-search
    order, and adding one never copies the catalog's metadata nor touches its index.
    """

    def __init__(
        self,
        index: faiss.Index,
        meta: pd.DataFrame,
        boards: pd.DataFrame,
        info: dict,
        added: faiss.Index | None = None,
    ) -> None:
        self.index, self.boards, self.info = index, boards, info
        meta = meta.reset_index(drop=True)
        for name in ("description", "link"):  # an index built before they were kept
            if name not in meta:
                meta[name] = ""
        base = int(index.ntotal)
        self.meta = meta.iloc[:base] if len(meta) > base else meta
        self.added: list[dict] = meta.iloc[base:][list(PIN_FIELDS)].to_dict("records")
        self.fresh = added if added is not None else faiss.IndexFlatIP(int(index.d))
        if self.fresh.ntotal != len(self.added):
            raise PinclipError(
                f"index holds {self.fresh.ntotal} added vectors for {len(self.added)} added "
                "pins: rebuild it with `pinclip index build`"
            )
        self.rows = RowMap(_arrow_column(meta["pin_id"]))
        # per-row reads of Arrow columns: no Python object per pin held (10^6+ pins)
        self._columns = {name: _arrow_column(self.meta[name]) for name in PIN_FIELDS}

    def __len__(self) -> int:
        return len(self.meta) + len(self.added)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def field(self, row: int, name: str):
        """One metadata field of a row (catalog or added)."""
        base = len(self.meta)
        return self._columns[name][row].as_py() if row < base else self.added[row - base][name]

    def pin(self, row: int) -> dict:
        return {name: self.field(row, name) for name in PIN_FIELDS}

    def board_rows(self) -> dict[str, np.ndarray]:
        """board_id -> the rows of its catalog pins, in row order (Arrow list kernels)."""
        boards = self._columns["boards"]
        rows = pc.list_parent_indices(boards).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(boards)
        names = pc.unique(flat)
        codes = pc.index_in(flat, value_set=names).to_numpy(zero_copy_only=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        return {
            str(b): rows[order[bounds[k] : bounds[k + 1]]].astype(np.int64)
            for k, b in enumerate(names.to_pylist())
        }

    def search(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        """Top `k` of the catalog's ANN index and the added pins' exact segment, merged."""
        queries = normalize(queries)
        scores, ids = self.index.search(queries, k)
        if self.fresh.ntotal:
            fresh_s, fresh_i = self.fresh.search(queries, min(k, self.fresh.ntotal))
            fresh_i = np.where(fresh_i >= 0, fresh_i + len(self.meta), -1)
            scores = np.concatenate([scores, fresh_s], axis=1)
            ids = np.concatenate([ids, fresh_i], axis=1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        return [
            [SearchHit(int(i), float(s)) for s, i in zip(srow, irow, strict=True) if i >= 0]
            for srow, irow in zip(scores, ids, strict=True)
        ]

    def vector(self, row: int) -> np.ndarray:
        base = len(self.meta)
        return (
            self.index.reconstruct(int(row)) if row < base else self.fresh.reconstruct(row - base)
        )

    def add(self, pin_id: str, vector: np.ndarray, **fields: object) -> int:
        """Add one pin without a rebuild or a copy; returns its row. Caller holds the write lock."""
        if pin_id in self.rows:
            raise KeyError(f"pin {pin_id!r} already exists")
        row = len(self)
        self.fresh.add(normalize(np.asarray(vector)[None]))
        record = {name: "" for name in PIN_FIELDS} | {
            "pin_id": pin_id,
            "boards": [],
            "source": "added",
        }
        self.added.append(record | {k: v for k, v in fields.items() if k in PIN_FIELDS})
        self.rows[pin_id] = row
        return row

    def save(self, out: str | Path) -> Path:
        """Write atomically: a temp sibling directory renamed over `out`."""
        meta = self.meta
        if self.added:
            meta = pd.concat([meta, pd.DataFrame(self.added)], ignore_index=True)
        with atomic_dir(out) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            if self.fresh.ntotal:
                faiss.write_index(self.fresh, str(tmp / ADDED_FILE))
            meta.to_parquet(tmp / META_FILE, index=False)
            self.boards.to_parquet(tmp / BOARDS_FILE, index=False)
            (tmp / INFO_FILE).write_text(json.dumps(self.info, indent=2) + "\n")
        return Path(out)

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = False) -> PinIndex:
        """Load an index directory; `mmap` maps the faiss file's vectors (every kind: flat
        and HNSW codes, IVF lists) instead of reading them: file pages, shared by the
        processes serving it, so an index larger than RAM can be served. Pins added later
        go to a separate in-memory index either way. Large metadata is memory-mapped too."""
        directory = Path(directory)
        restore_dir(directory)
        if not (directory / INDEX_FILE).is_file():
            raise PinclipError(
                f"{directory / INDEX_FILE} not found: build one with `pinclip index build`"
            )
        info = json.loads((directory / INFO_FILE).read_text())
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(directory / INDEX_FILE), flags)
        set_search_params(index, info.get("search_params", SEARCH_DEFAULTS))
        added = directory / ADDED_FILE
        return cls(
            index,
            _read_meta(directory / META_FILE),
            pd.read_parquet(directory / BOARDS_FILE),
            info,
            faiss.read_index(str(added)) if added.is_file() else None,
        )


def _read_meta(path: Path) -> pd.DataFrame:
    """The pins' metadata as Arrow-backed columns (no Python object per pin), mapped from
    its Arrow copy when large."""
    table = mapped_table(path)
    if table is None:
        return pd.read_parquet(path, dtype_backend="pyarrow")
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def catalog_metadata(
    pin_ids: list[str], catalog_dir: str | Path | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per pin: title, image path, boards, description and link (from the catalog if given);
    the boards table."""
    meta = pd.DataFrame(
        {
            "pin_id": pin_ids,
            "title": "",
            "image": "",
            "source": "catalog",
            "description": "",
            "link": "",
        }
    )
    meta["boards"] = [[] for _ in pin_ids]
    boards = pd.DataFrame({"board_id": pd.Series(dtype=str), "title": pd.Series(dtype=str)})
    if catalog_dir is None:
        return meta, boards
    from pinclip.data.catalog import read_catalog

    catalog, _ = read_catalog(catalog_dir, check_images=False)
    pins = catalog.pins.assign(pin_id=catalog.pins["pin_id"].astype(str)).set_index("pin_id")
    unknown = [p for p in pin_ids if p not in pins.index]
    if unknown:
        raise PinclipError(
            f"{len(unknown)} embedded pins are not in catalog {catalog_dir} (e.g. {unknown[:3]}); "
            "embed and index the same catalog"
        )
    meta["title"] = pins.loc[pin_ids, "title"].fillna("").astype(str).to_numpy()
    meta["image"] = pins.loc[pin_ids, "image"].astype(str).to_numpy()
    for name in ("description", "link"):
        if name in pins:
            meta[name] = pins.loc[pin_ids, name].fillna("").astype(str).to_numpy()
    edges = catalog.edges.astype({"pin_id": str, "board_id": str})
    by_pin = edges.groupby("pin_id")["board_id"].apply(list)
    meta["boards"] = [by_pin.get(p, []) for p in pin_ids]
    boards = catalog.boards[["board_id", "title"]].astype(str)
    return meta, boards


def build_index(
    embeddings: str | Path,
    out: str | Path,
    *,
    kind: str = DEFAULT_KIND,
    catalog_dir: str | Path | None = None,
    recall_queries: int = 1000,
    seed: int = 0,
    key: str = EMBEDDING_KEY,
    batch_rows: int = 65_536,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[PinIndex, dict]:
    """Build from the embedding parts, streaming: only `pin_id` and `key` are read, a batch
    at a time, so memory is the index plus one batch (plus a training sample for IVF kinds).
    Recall@10 against exact search (on `recall_queries` pins) is measured in the same pass.
    """
    from .embed import count_embeddings, embeddings_model, iter_embeddings, open_embeddings, vectors

    n = count_embeddings(embeddings)
    if n == 0:
        raise PinclipError(f"{embeddings} holds no pins; re-run `pinclip embed`")
    d = open_embeddings(embeddings).schema.field(key).type.list_size
    rng = np.random.default_rng(seed)
    query_rows = np.sort(rng.choice(n, size=min(recall_queries, n), replace=False))
    index, spec = new_index(kind, n, d)
    train_rows = None
    if not index.is_trained:
        train_rows = np.sort(rng.choice(n, size=min(n, TRAIN_ROWS), replace=False))
    start = time.perf_counter()
    pin_ids, queries, train = _first_pass(
        iter_embeddings(embeddings, ("pin_id", key), batch_rows), key, query_rows, train_rows
    )
    if len(set(pin_ids)) != len(pin_ids):
        raise PinclipError(f"{embeddings}: duplicate pin_id values; re-run `pinclip embed`")
    if train is not None:
        index.train(train)
        del train
    truth = ExactTopK(queries, 10)
    row = 0
    report = progress or (lambda done, total: None)
    for batch in iter_embeddings(embeddings, (key,), batch_rows):
        x = normalize(vectors(batch[key]))
        index.add_with_ids(x, np.arange(row, row + len(x), dtype=np.int64))
        truth.update(x, row)
        row += len(x)
        report(row, n)
    search_params = set_search_params(index, SEARCH_DEFAULTS)
    build_s = time.perf_counter() - start
    recall, qps = truth.recall(index)
    meta, boards = catalog_metadata(pin_ids, catalog_dir)
    info = {
        "kind": kind,
        "factory": spec,
        "search_params": search_params,
        "dim": int(d),
        "count": n,
        "recall@10": recall,
        "qps": qps,
        "build_seconds": build_s,
        "embeddings": str(embeddings),
        "model": embeddings_model(embeddings),  # {path, fingerprint}: serve refuses another model
        "catalog": str(Path(catalog_dir).resolve()) if catalog_dir else None,
    }
    pin_index = PinIndex(index, meta, boards, info)
    pin_index.save(out)
    info["bytes_per_vector"] = (Path(out) / INDEX_FILE).stat().st_size / n  # raw: 4 * dim
    atomic_write_text(Path(out) / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return pin_index, info


def _first_pass(batches, key: str, query_rows: np.ndarray, train_rows: np.ndarray | None):
    """pin ids, the query vectors and the training sample, gathered in one streaming pass."""
    from .embed import vectors

    pin_ids: list[str] = []
    queries, train = [], []
    row = 0
    for batch in batches:
        m = batch.num_rows
        pin_ids += batch["pin_id"].to_pylist()
        wanted = [r for r in (query_rows, train_rows) if r is not None]
        if any(((r >= row) & (r < row + m)).any() for r in wanted):
            x = normalize(vectors(batch[key]))
            queries.append(x[query_rows[(query_rows >= row) & (query_rows < row + m)] - row])
            if train_rows is not None:
                train.append(x[train_rows[(train_rows >= row) & (train_rows < row + m)] - row])
        row += m
    return (
        pin_ids,
        np.concatenate(queries),
        (np.concatenate(train) if train_rows is not None else None),
    )
