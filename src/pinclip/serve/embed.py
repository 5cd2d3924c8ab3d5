"""Embed a whole catalog into `embeddings.parquet`, resumable after a kill.

The catalog's pins are cut into fixed parts of `part_size` rows. Each finished part is
written atomically (temp file + rename) and only then recorded in `manifest.json` (also
atomic), so a killed job restarts at the first unrecorded part: no row is lost or written
twice. When all parts exist they are concatenated, in order, into `embeddings.parquet`.
`engine="ray"` hands the missing parts to Ray Data workers instead of a local loop.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pinclip.data.catalog import read_catalog

from .embedder import Embedder, load_embedder

EMBEDDINGS_FILE = "embeddings.parquet"
MANIFEST_FILE = "manifest.json"
PARTS_DIR = "parts"
KEYS = ("image_emb", "text_emb", "pin_emb")


@dataclass
class EmbedJob:
    """What a part needs: the model, the catalog and the rows to embed."""

    model_dir: str
    catalog_dir: str
    out: str
    backend: str
    batch_size: int
    part_size: int
    workers: int


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write, fsync, rename: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def embeddings_table(pin_ids: list[str], emb: dict[str, np.ndarray]) -> pa.Table:
    """pin_id + the three embeddings as fixed-size lists of float32."""
    cols = {"pin_id": pa.array(pin_ids, pa.string())}
    for key in KEYS:
        values = np.ascontiguousarray(emb[key], dtype=np.float32)
        cols[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return pa.table(cols)


def read_embeddings(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """pin ids and [N, D] float32 arrays of an embeddings parquet file."""
    table = pq.read_table(path)
    missing = [c for c in ("pin_id", *KEYS) if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; write it with `pinclip embed`")
    out = {}
    for key in KEYS:
        col = table[key].combine_chunks()
        out[key] = (
            col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32)
        )
    return table["pin_id"].to_pylist(), out


def _pins_frame(catalog_dir: str):
    catalog, _ = read_catalog(catalog_dir, check_images=False)
    pins = catalog.pins
    return catalog, pins["pin_id"].astype(str).tolist(), pins["image"].tolist(), catalog.texts()


def _fingerprint(job: EmbedJob, pin_ids: list[str]) -> str:
    """Changes when the model weights, the pins or the part layout change: then start over."""
    h = hashlib.sha256()
    model_dir = Path(job.model_dir)
    for name in ("config.json", "model.safetensors", "export.json"):
        if (model_dir / name).is_file():
            h.update(str((model_dir / name).stat().st_mtime_ns).encode())
            h.update(str((model_dir / name).stat().st_size).encode())
    h.update(json.dumps([job.backend, job.part_size, pin_ids]).encode())
    return h.hexdigest()[:16]


class PartRunner:
    """Embeds one part: decode images in a thread pool (one batch ahead), run the model."""

    def __init__(self, job: EmbedJob, embedder: Embedder | None = None) -> None:
        self.job = job
        self.embedder = embedder or load_embedder(job.model_dir, job.backend)
        self.catalog, self.pin_ids, self.images, self.texts = _pins_frame(job.catalog_dir)
        self.pool = ThreadPoolExecutor(max_workers=max(1, job.workers))

    def _pixels(self, rows: range):
        load = lambda i: self.embedder.preprocess(self.catalog.load_image(self.images[i]))  # noqa: E731
        return self.pool.map(load, rows)

    def run(self, part: int, on_rows: Callable[[int], None] | None = None) -> Path:
        job = self.job
        start, stop = part * job.part_size, min((part + 1) * job.part_size, len(self.pin_ids))
        batches = [
            range(b, min(b + job.batch_size, stop)) for b in range(start, stop, job.batch_size)
        ]
        chunks: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
        pending = self._pixels(batches[0]) if batches else None
        for i, rows in enumerate(batches):
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
        path = Path(job.out) / PARTS_DIR / f"part-{part:05d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        return path


class Manifest:
    """Which parts are done, for one fingerprint; saved atomically after every part."""

    def __init__(self, out: Path, fingerprint: str, n_parts: int) -> None:
        self.path = out / MANIFEST_FILE
        self.fingerprint, self.n_parts = fingerprint, n_parts
        self.done: set[int] = set()
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            if data.get("fingerprint") == fingerprint:
                self.done = {
                    p for p in data["done"] if (out / PARTS_DIR / f"part-{p:05d}.parquet").is_file()
                }

    def mark(self, part: int) -> None:
        self.done.add(part)
        payload = {
            "fingerprint": self.fingerprint,
            "n_parts": self.n_parts,
            "done": sorted(self.done),
        }
        atomic_write_bytes(self.path, json.dumps(payload).encode())

    @property
    def todo(self) -> list[int]:
        return [p for p in range(self.n_parts) if p not in self.done]


def embed_catalog(
    model_dir: str | Path,
    catalog_dir: str | Path,
    out: str | Path,
    *,
    backend: str = "torch",
    engine: str = "local",
    batch_size: int = 64,
    part_size: int = 512,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    max_parts: int | None = None,
) -> Path | None:
    """Embed every pin of a catalog into `out/embeddings.parquet`; resumes a killed run.

    `progress(done_rows, total_rows)` is called as rows finish. `max_parts` stops after that
    many new parts (what a test uses to simulate a kill); the result is None then.
    """
    out = Path(out)
    (out / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    job = EmbedJob(
        str(model_dir), str(catalog_dir), str(out), backend, batch_size, part_size, workers
    )
    _, pin_ids, _, _ = _pins_frame(job.catalog_dir)
    n_parts = -(-len(pin_ids) // part_size)
    manifest = Manifest(out, _fingerprint(job, pin_ids), n_parts)
    todo = manifest.todo[:max_parts] if max_parts is not None else manifest.todo
    done_rows = sum(_part_rows(p, part_size, len(pin_ids)) for p in manifest.done)
    report = progress or (lambda done, total: None)
    report(done_rows, len(pin_ids))
    if engine == "local":
        runner = PartRunner(job)
        for part in todo:

            def step(n: int) -> None:
                nonlocal done_rows
                done_rows += n
                report(done_rows, len(pin_ids))

            runner.run(part, step)
            manifest.mark(part)
    elif engine == "ray":
        for part in _run_ray(job, todo):
            manifest.mark(part)
            done_rows += _part_rows(part, part_size, len(pin_ids))
            report(done_rows, len(pin_ids))
    else:
        raise ValueError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    if manifest.todo:
        return None
    return _concatenate(out, n_parts, len(pin_ids))


def _part_rows(part: int, part_size: int, total: int) -> int:
    return min(part_size, total - part * part_size)


def _concatenate(out: Path, n_parts: int, n_rows: int) -> Path:
    tables = [pq.read_table(out / PARTS_DIR / f"part-{p:05d}.parquet") for p in range(n_parts)]
    table = pa.concat_tables(tables)
    if table.num_rows != n_rows or len(set(table["pin_id"].to_pylist())) != n_rows:
        raise RuntimeError(
            f"{out}: parts hold {table.num_rows} rows for {n_rows} pins; delete {out} and re-run"
        )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    path = out / EMBEDDINGS_FILE
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


class _RayPartEmbedder:
    """A Ray Data actor: loads the model once, embeds whole parts, writes them atomically."""

    def __init__(self, job: dict) -> None:
        import torch

        torch.set_num_threads(1)
        self.runner = PartRunner(EmbedJob(**job))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for part in batch["part"]:
            self.runner.run(int(part))
        return {"part": batch["part"]}


def _run_ray(job: EmbedJob, todo: list[int]) -> Iterator[int]:
    """Run the parts on Ray Data (a local Ray is started if none is connected)."""
    import ray

    if not todo:
        return
    if not ray.is_initialized():
        ray.init(num_cpus=max(1, job.workers), include_dashboard=False, log_to_driver=False)
    ds = ray.data.from_items([{"part": p} for p in todo]).map_batches(
        _RayPartEmbedder,
        batch_size=1,
        concurrency=max(1, min(job.workers, len(todo))),
        num_cpus=1,
        fn_constructor_kwargs={"job": job.__dict__ | {"workers": 1}},
    )
    for row in ds.iter_rows():
        yield int(row["part"])
