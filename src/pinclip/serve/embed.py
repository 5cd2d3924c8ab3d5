"""Embed a whole catalog into parquet parts plus a manifest, resumable, locally or on Ray.

The catalog's pins are cut into fixed parts of `part_size` rows. Each finished part is
written whole (locally: temp file + rename; an object store publishes a whole object at
once) and only then recorded in `manifest.json`, so a killed job restarts at the first
unrecorded part: no row is lost or written twice. The parts are never concatenated: the
output directory *is* the data set (`open_embeddings` reads it as one pyarrow dataset,
`iter_embeddings` streams one column at a time), so 10^8 pins never sit in memory.

With `features` (the `<cache_dir>/features` folder training wrote) and a model whose stem
and text encoder are frozen, the frozen outputs are read from that store by row instead of
being recomputed, and only the trainable layers run: a catalog the model was trained on is
embedded without decoding a single image. The store is used only when it holds every pin and
a sample of pins embeds the same both ways (`STORED_MIN_COS`; `STORED_INT8_MIN_COS` for text
states computed in int8); otherwise the pins are
computed, as new pins always are when served.

The output may be a local path or any fsspec URL (`s3://bucket/emb`, `gs://...`,
`file:///shared/emb`): with `engine="ray"` every worker, on whichever node, writes its
parts there. `ray_address` (or `RAY_ADDRESS`) joins an existing cluster and leaves its
resources to it; without one a local Ray with `workers` CPUs is started.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pinclip.atomic import write_with
from pinclip.data.catalog import Catalog, TextColumn, read_catalog
from pinclip.errors import PinclipError, require
from pinclip.memory import bound_heap_growth

from .embedder import (
    Embedder,
    TorchEmbedder,
    load_embedder,
    model_fingerprint,
    resolve_backend,
    resolve_device,
)

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
PARTS_DIR = "parts"
KEYS = ("image_emb", "text_emb", "pin_emb")
#: Least cosine between a pin embedded from stored features and the same pin computed, over
#: a sample (fp16/int8 storage moves an embedding by ~1e-4); below it the store is not used.
STORED_MIN_COS = 0.999
#: The same for a store whose text states were computed with int8 MatMuls
#: (`data.feature_text_compute=int8`: token states within cosine 0.96 of fp32).
STORED_INT8_MIN_COS = 0.99
STORED_CHECKED_PINS = 8


class EmbeddingsError(PinclipError):
    """An embeddings location that is missing, unfinished or not written by `pinclip embed`."""


@dataclass
class EmbedJob:
    """What a part needs: the model, the catalog and where the parts go."""

    model_dir: str
    catalog_dir: str
    out: str  # local path or fsspec URL
    backend: str  # torch | onnx (already resolved from auto)
    device: str  # cpu | cuda[:N] | mps (already resolved from auto)
    batch_size: int
    part_size: int
    workers: int
    features: str | None = None  # a feature store root: frozen outputs read, not recomputed


class Location:
    """A directory on a local disk or behind an fsspec URL, written one whole file at a time."""

    def __init__(self, url: str | Path) -> None:
        import fsspec

        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.local = "file" in _protocols(self.fs)

    def path(self, *names: str) -> str:
        return "/".join([self.root.rstrip("/"), *names])

    def exists(self, *names: str) -> bool:
        return self.fs.exists(self.path(*names))

    def makedirs(self, *names: str) -> None:
        self.fs.makedirs(self.path(*names), exist_ok=True)

    def write(self, name: str, writer: Callable[[object], None]) -> None:
        """Write `name` with `writer(file)`; readers see the old file or the new one."""
        if self.local:
            write_with(self.path(name), writer)
        else:  # object stores publish an object only once its upload completes
            with self.fs.open(self.path(name), "wb") as fh:
                writer(fh)

    def read_text(self, name: str) -> str:
        with self.fs.open(self.path(name), "r") as fh:
            return fh.read()


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def part_name(part: int) -> str:
    return f"{PARTS_DIR}/part-{part:05d}.parquet"


def embeddings_table(pin_ids: list[str], emb: dict[str, np.ndarray]) -> pa.Table:
    """pin_id + the three embeddings as fixed-size lists of float32."""
    cols = {"pin_id": pa.array(pin_ids, pa.string())}
    for key in KEYS:
        values = np.ascontiguousarray(emb[key], dtype=np.float32)
        cols[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return pa.table(cols)


def vectors(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """[N, D] float32 view of a fixed-size-list column (no copy for one chunk)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(column), -1).astype(np.float32, copy=False)


# ----- reading ------------------------------------------------------------------------------
def open_embeddings(path: str | Path) -> pads.Dataset:
    """The embeddings of `pinclip embed` as one pyarrow dataset, parts in pin order.

    `path` is the output directory (or URL) holding manifest.json, or a single parquet file.
    An unfinished run is refused: re-run the same `pinclip embed` command to finish it.
    """
    location = Location(path)
    if str(path).endswith(".parquet"):
        if not location.fs.isfile(location.root):
            raise EmbeddingsError(f"{path} not found: write it with `pinclip embed`")
        return _checked(pads.dataset(location.root, filesystem=location.fs, format="parquet"), path)
    if not location.exists(MANIFEST_FILE):
        raise EmbeddingsError(
            f"{path}: no {MANIFEST_FILE}; pass the output directory of `pinclip embed`"
        )
    manifest = json.loads(location.read_text(MANIFEST_FILE))
    n_parts, done = manifest["n_parts"], set(manifest["done"])
    if len(done) < n_parts:
        raise EmbeddingsError(
            f"{path} is unfinished: {len(done)} of {n_parts} parts embedded; re-run the same "
            "`pinclip embed` command to finish it"
        )
    files = [location.path(part_name(p)) for p in range(n_parts)]
    return _checked(pads.dataset(files, filesystem=location.fs, format="parquet"), path)


def _checked(dataset: pads.Dataset, path: str | Path) -> pads.Dataset:
    missing = [c for c in ("pin_id", *KEYS) if c not in dataset.schema.names]
    if missing:
        raise EmbeddingsError(f"{path}: missing column(s) {missing}; write it with `pinclip embed`")
    return dataset


def iter_embeddings(
    path: str | Path, columns: tuple[str, ...] = ("pin_id", "pin_emb"), batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Stream `columns` in pin order, `batch_rows` at a time; other columns are never read."""
    dataset = open_embeddings(path)
    for fragment in dataset.get_fragments():  # in file (= pin) order
        yield from fragment.to_batches(columns=list(columns), batch_size=batch_rows)


def embeddings_model(path: str | Path) -> dict | None:
    """The model that wrote the embeddings ({path, fingerprint}), from their manifest."""
    location = Location(path)
    if str(path).endswith(".parquet") or not location.exists(MANIFEST_FILE):
        return None
    return json.loads(location.read_text(MANIFEST_FILE)).get("model")


def count_embeddings(path: str | Path) -> int:
    return open_embeddings(path).count_rows()


def read_embeddings(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """pin ids and [N, D] float32 arrays of all three embeddings, in memory (small catalogs)."""
    table = open_embeddings(path).to_table(columns=["pin_id", *KEYS])
    return table["pin_id"].to_pylist(), {key: vectors(table[key]) for key in KEYS}


# ----- writing ------------------------------------------------------------------------------
def _pins_frame(catalog_dir: str) -> tuple[Catalog, TextColumn, TextColumn, TextColumn]:
    """The catalog and its pin ids, image values and texts as Arrow-backed sequences (a
    10^6-pin job holds their bytes, not three lists of Python strings)."""
    catalog, _ = read_catalog(catalog_dir, check_images=False)
    ids, images = (
        TextColumn(catalog.column("pins", "pin_id")),
        TextColumn(catalog.column("pins", "image")),
    )
    return catalog, ids, images, catalog.texts()


def _fingerprint(job: EmbedJob, pin_ids: Sequence[str]) -> str:
    """Changes when the model weights, the pins or the part layout change: then start over."""
    h = hashlib.sha256()
    model_dir = Path(job.model_dir)
    for name in ("config.json", "model.safetensors", "export.json"):
        if (model_dir / name).is_file():
            h.update(str((model_dir / name).stat().st_mtime_ns).encode())
            h.update(str((model_dir / name).stat().st_size).encode())
    device_kind = job.device.split(":")[0]
    h.update(json.dumps([job.backend, device_kind, job.part_size, list(pin_ids)]).encode())
    if (
        job.features is not None
    ):  # rows from stored (fp16/int8) features differ in the 4th decimal: start over
        h.update(b"stored-features")
    return h.hexdigest()[:16]


class PartRunner:
    """Embeds one part: decode images in a thread pool (one batch ahead), run the model."""

    def __init__(self, job: EmbedJob, embedder: Embedder | None = None) -> None:
        self.job = job
        self.location = Location(job.out)
        self.embedder = embedder or load_embedder(
            job.model_dir, job.backend, device=job.device, threads=None
        )
        self.catalog, self.pin_ids, self.images, self.texts = _pins_frame(job.catalog_dir)
        bound_heap_growth(len(self.pin_ids))  # a long job over a large catalog (pinclip.memory)
        self.pool = ThreadPoolExecutor(max_workers=max(1, job.workers))
        self.stored = (
            StoredPins.open(job.features, self.embedder, self.catalog, self.images, self.texts)
            if job.features is not None
            else None
        )

    def _pixels(self, rows: range):
        load = lambda i: self.embedder.preprocess(self.catalog.load_image(self.images[i]))  # noqa: E731
        return self.pool.map(load, rows)

    def run(self, part: int, on_rows: Callable[[int], None] | None = None) -> str:
        job = self.job
        start, stop = part * job.part_size, min((part + 1) * job.part_size, len(self.pin_ids))
        batches = [
            range(b, min(b + job.batch_size, stop)) for b in range(start, stop, job.batch_size)
        ]
        chunks: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
        stored = self.stored
        pending = self._pixels(batches[0]) if batches and stored is None else None
        for i, rows in enumerate(batches):
            if stored is not None:
                out = stored.embed(np.arange(rows.start, rows.stop))
            else:
                pixels = np.stack(list(pending))
                pending = self._pixels(batches[i + 1]) if i + 1 < len(batches) else None
                out = self.embedder.embed_pins(pixels, [self.texts[r] for r in rows])
            for key in KEYS:
                chunks[key].append(out[key])
            if on_rows:
                on_rows(len(rows))
        table = embeddings_table(
            self.pin_ids[start:stop], {k: np.concatenate(v) for k, v in chunks.items()}
        )
        self.location.write(part_name(part), lambda fh: pq.write_table(table, fh))
        return self.location.path(part_name(part))


class StoredPins:
    """The catalog's pins embedded from a feature store: stored frozen outputs, trainable layers
    run. `open` returns None (and says why) when the store cannot stand in for the encoders."""

    def __init__(self, embedder: TorchEmbedder, image_table, text_table) -> None:
        self.embedder = embedder
        self.image_table = image_table
        self.text_table = text_table

    @classmethod
    def open(
        cls, root: str | Path, embedder: Embedder, catalog, images: list[str], texts: list[str]
    ) -> StoredPins | None:
        from pinclip.model import FeatureStore, FeatureStoreError
        from pinclip.model.feature_store import DTYPES, TEXT_COMPUTE

        if not isinstance(embedder, TorchEmbedder):
            raise EmbeddingsError(
                "--features feeds stored frozen outputs to the PyTorch model: use --backend "
                "torch with a model directory (an ONNX export takes pixels)"
            )
        cfg = embedder.model.config
        if embedder.model.is_vlm:
            log.info("feature store not used: a VLM backbone reads every image and text")
            return None
        if not (cfg.freeze_stem and cfg.freeze_text_encoder):
            log.info("feature store not used: the model trains its stem or text encoder")
            return None
        paths = [catalog.image_path(i) for i in images]
        for dtype, compute in itertools.product(DTYPES, TEXT_COMPUTE):  # what training chose
            store = FeatureStore(root, embedder.model, dtype=dtype, text_compute=compute)
            if not (store.folder("images").is_dir() and store.folder("texts").is_dir()):
                continue
            try:
                stored = cls(embedder, store.table("images", paths), store.table("texts", texts))
            except FeatureStoreError as err:
                log.info("feature store (%s) not used: %s", dtype, err)
                continue
            least = STORED_INT8_MIN_COS if compute == "int8" else STORED_MIN_COS
            if not stored._agrees(catalog, images, texts, least):
                return None
            log.info("frozen features read from %s (%s), not recomputed", root, dtype)
            return stored
        log.info("feature store %s holds no features of this model's frozen parts", root)
        return None

    def _agrees(self, catalog, images: list[str], texts: list[str], least: float) -> bool:
        """A sample of pins, embedded from the store and computed: cosine at least `least`."""
        n = len(images)
        idx = np.unique(np.linspace(0, n - 1, min(n, STORED_CHECKED_PINS)).astype(np.int64))
        pre = self.embedder.preprocess
        pixels = np.stack([pre(catalog.load_image(images[i])) for i in idx])
        direct = self.embedder.embed_pins(pixels, [texts[i] for i in idx])
        stored = self.embed(idx)
        unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)  # noqa: E731
        cos = min(float((unit(direct[k]) * unit(stored[k])).sum(1).min()) for k in KEYS)
        if cos < least:
            log.warning(
                "feature store not used: a stored pin embeds at cosine %.4f to the same pin "
                "computed (< %s); computing every pin", cos, least
            )  # fmt: skip
        return cos >= least

    def embed(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The three embeddings of pins `idx` (catalog rows) from their stored features."""
        return self.embedder.embed_stored(
            self.image_table.image_features(idx), self.text_table.text_states(idx)
        )


class Manifest:
    """Which parts are done, for one fingerprint; rewritten whole after every part."""

    def __init__(self, location: Location, fingerprint: str, n_parts: int, meta: dict) -> None:
        self.location = location
        self.fingerprint, self.n_parts, self.meta = fingerprint, n_parts, meta
        self.done: set[int] = set()
        if location.exists(MANIFEST_FILE):
            data = json.loads(location.read_text(MANIFEST_FILE))
            if data.get("fingerprint") == fingerprint:
                self.done = {p for p in data["done"] if location.exists(part_name(p))}

    def mark(self, part: int) -> None:
        self.done.add(part)
        self.save()

    def save(self) -> None:
        payload = {
            "fingerprint": self.fingerprint,
            "n_parts": self.n_parts,
            "done": sorted(self.done),
            **self.meta,
        }
        text = json.dumps(payload, indent=1)
        self.location.write(MANIFEST_FILE, lambda fh: fh.write(text.encode()))

    @property
    def todo(self) -> list[int]:
        return [p for p in range(self.n_parts) if p not in self.done]


def embed_catalog(
    model_dir: str | Path,
    catalog_dir: str | Path,
    out: str | Path,
    *,
    backend: str = "auto",
    device: str = "auto",
    engine: str = "local",
    ray_address: str | None = None,
    batch_size: int = 64,
    part_size: int = 512,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    max_parts: int | None = None,
    features: str | Path | None = None,
) -> Path | str | None:
    """Embed every pin of a catalog into parts under `out` (a path or an fsspec URL).

    `features`: the feature store training built (`<data.cache_dir>/features`); its stored
    frozen outputs are read instead of recomputed when it holds them (see the module doc).

    Returns `out` once every part is done (read it with `open_embeddings`), None when
    `max_parts` stopped the run early (what tests use to simulate a kill). Re-running the
    same call resumes. `progress(done_rows, total_rows)` is called as rows finish.
    """
    if engine not in ("local", "ray"):
        raise PinclipError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    ray = _connect_ray(ray_address, workers) if engine == "ray" else None
    if ray is not None and device == "auto":
        device = "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
    device = resolve_device(device) if ray is None else device
    backend = resolve_backend(model_dir, backend, device)
    location = Location(out)
    location.makedirs(PARTS_DIR)
    job = EmbedJob(
        str(model_dir), str(catalog_dir), location.url, backend, device, batch_size, part_size,
        workers, None if features is None else str(features),
    )  # fmt: skip
    _, pin_ids, _, _ = _pins_frame(job.catalog_dir)
    if not pin_ids:
        raise EmbeddingsError(f"catalog {catalog_dir} has no pins to embed")
    n_parts = -(-len(pin_ids) // part_size)
    meta = {"rows": len(pin_ids), "part_size": part_size, "backend": backend, "keys": list(KEYS)}
    meta["model"] = {"path": str(model_dir), "fingerprint": model_fingerprint(model_dir)}
    manifest = Manifest(location, _fingerprint(job, pin_ids), n_parts, meta)
    todo = manifest.todo[:max_parts] if max_parts is not None else manifest.todo
    done_rows = sum(_part_rows(p, part_size, len(pin_ids)) for p in manifest.done)
    report = progress or (lambda done, total: None)
    report(done_rows, len(pin_ids))
    if ray is None:
        runner = PartRunner(job)
        for part in todo:

            def step(n: int) -> None:
                nonlocal done_rows
                done_rows += n
                report(done_rows, len(pin_ids))

            runner.run(part, step)
            manifest.mark(part)
    else:
        for part in _run_ray(ray, job, todo):
            manifest.mark(part)
            done_rows += _part_rows(part, part_size, len(pin_ids))
            report(done_rows, len(pin_ids))
    if manifest.todo:
        return None
    _check_complete(location, len(pin_ids))
    return Path(out) if location.local and "://" not in str(out) else str(out)


def _part_rows(part: int, part_size: int, total: int) -> int:
    return min(part_size, total - part * part_size)


def _check_complete(location: Location, n_rows: int) -> None:
    """The parts hold one row per pin (counted from the parquet footers)."""
    rows = open_embeddings(location.url).count_rows()
    if rows != n_rows:
        raise EmbeddingsError(
            f"{location.url}: parts hold {rows} rows for {n_rows} pins; delete it and re-run"
        )


# ----- Ray ----------------------------------------------------------------------------------
def _connect_ray(address: str | None, workers: int):
    """Join the cluster at `address` / RAY_ADDRESS (its resources are its own), or start one."""
    ray = require("ray", "ray", "--engine ray")
    require("ray.data", "ray", "--engine ray")
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    return ray


class _RayPartEmbedder:
    """A Ray Data actor: loads the model once, embeds whole parts, writes them to the output."""

    def __init__(self, job: dict) -> None:
        import torch

        if job["device"] == "cpu":
            torch.set_num_threads(1)
        self.runner = PartRunner(EmbedJob(**job))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for part in batch["part"]:
            self.runner.run(int(part))
        return {"part": batch["part"]}


def _run_ray(ray, job: EmbedJob, todo: list[int]) -> Iterator[int]:
    """Run the parts on Ray Data actors (one GPU each when the device is CUDA).

    A killed actor is restarted and its part re-run (parts are written whole, so a re-run
    overwrites, never duplicates); parts already recorded are never handed out again.
    """
    if not todo:
        return
    gpus = 1 if job.device.startswith("cuda") else 0
    ds = ray.data.from_items([{"part": p} for p in todo]).map_batches(
        _RayPartEmbedder,
        batch_size=1,
        concurrency=max(1, min(job.workers, len(todo))),
        num_cpus=1,
        num_gpus=gpus,
        max_restarts=-1,
        max_task_retries=-1,
        fn_constructor_kwargs={"job": asdict(job) | {"workers": 1}},
    )
    for row in ds.iter_rows():
        yield int(row["part"])
