"""The search service behind the HTTP API: embed queries, search the index, add pins.

Queries use the embedding the model aligned with pins: text -> `text_emb`, an uploaded
image -> `image_emb`, a pin -> its `pin_emb`; the index holds fused `pin_emb`s. One lock
guards the index (faiss HNSW is not safe to search while adding).

Under concurrency, query forwards are micro-batched: requests that arrive while the model is
busy (or within `batch_wait_ms` of the first) run as one batched forward, which on a CPU
costs far less than one forward each. A server is the one writer of its pin store, or a
read-only replica (`read_only=True`) that follows the writer's log and adds its new pins to
its own index every `refresh_s` seconds; run N replicas over one index behind a balancer.
"""

from __future__ import annotations

import logging
import queue
import re
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinclip.data.catalog import pin_text
from pinclip.data.images import ImageError, load_image, resolve_image_path
from pinclip.errors import InputError, PinclipError

from .embedder import Embedder, load_embedder, model_fingerprint
from .index import PinIndex
from .store import AddedPin, PinStore

PIN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
#: What /v1/catalog/... serves: image files only, never the catalog's tables (who saved what).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
#: A replica's refresh loop waits refresh_s * 2**failures after failures in a row, at most this.
MAX_BACKOFF_S = 60.0

log = logging.getLogger(__name__)


class ServiceError(PinclipError):
    """A client error: `status` is the HTTP code, the message says what to change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MicroBatcher:
    """Run `forward(items) -> [N, D]` on batches of concurrent calls, one thread, in order.

    A call waits for the batch it joins: the first item starts a batch, which takes whatever
    else is queued (up to `max_batch`), waiting at most `wait_s` for more. With no
    concurrency a call pays at most `wait_s`; under load the batches fill while the previous
    forward runs, so waiting is rare.
    """

    def __init__(
        self, forward: Callable[[list], np.ndarray], *, max_batch: int = 32, wait_s: float = 0.002
    ) -> None:
        self.forward, self.max_batch, self.wait_s = forward, max_batch, wait_s
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.batches = 0  # forwards run (requests / batches = mean batch size)
        self._thread = threading.Thread(target=self._loop, name="pinclip-batcher", daemon=True)
        self._thread.start()

    def __call__(self, item) -> np.ndarray:
        future: Future = Future()
        self.queue.put((item, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                out = self.forward([item for item, _ in batch])
            except BaseException as err:  # the callers see the error, the loop goes on
                for _, future in batch:
                    future.set_exception(err)
                continue
            self.batches += 1
            for (_, future), row in zip(batch, out, strict=True):
                future.set_result(row)


@dataclass
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 16_000_000
    max_k: int = 100
    max_query_chars: int = 1000
    max_results: int = 1000  # how deep paging may go: offset + k <= this


class PinService:
    def __init__(
        self,
        index: PinIndex,
        embedder: Embedder,
        *,
        catalog_dir: str | Path | None = None,
        store_dir: str | Path | None = None,
        limits: Limits | None = None,
        read_only: bool = False,
        refresh_s: float = 1.0,
        batch_wait_ms: float = 2.0,
        max_batch: int = 32,
    ) -> None:
        self.index, self.embedder = index, embedder
        self.limits = limits or Limits()
        self.catalog_dir = Path(catalog_dir) if catalog_dir else None
        self.read_only = read_only
        self.store = PinStore(store_dir, read_only=read_only) if store_dir else None
        self.lock = threading.Lock()
        self.board_titles = dict(zip(index.boards["board_id"], index.boards["title"], strict=True))
        self.replayed = self._replay()
        self.follow_errors = 0  # a replica's failed refreshes since start-up (/metrics)
        self._boards_index: dict[str, np.ndarray] | None = None
        self._embed_texts, self._embed_images = self._batchers(batch_wait_ms, max_batch)
        if read_only and self.store is not None:
            threading.Thread(
                target=self._follow, args=(refresh_s,), name="pinclip-follow", daemon=True
            ).start()

    @classmethod
    def open(
        cls,
        index_dir: str | Path,
        model_dir: str | Path,
        *,
        backend: str = "auto",
        device: str = "auto",
        catalog_dir: str | Path | None = None,
        store_dir: str | Path | None = None,
        limits: Limits | None = None,
        allow_model_mismatch: bool = False,
        **options,
    ) -> PinService:
        """Load index + model; added pins live in `store_dir` (default `<index_dir>/added`).
        The model must be the one the index was embedded with (its fingerprint, recorded in
        the index) unless `allow_model_mismatch`. `options`: read_only, refresh_s,
        batch_wait_ms, max_batch (see the class)."""
        index = PinIndex.load(index_dir, mmap=True)  # the vectors stay file pages
        catalog_dir = catalog_dir or index.info.get("catalog")
        store_dir = store_dir or Path(index_dir) / "added"
        check_model(index.info, model_dir, index_dir, allow_mismatch=allow_model_mismatch)
        embedder = load_embedder(model_dir, backend, device=device)
        if embedder.config.embed_dim != index.dim:
            raise InputError(
                f"model {model_dir} embeds in {embedder.config.embed_dim} dims but index {index_dir} "
                f"holds {index.dim}: serve the model the index was built with"
            )
        return cls(
            index, embedder, catalog_dir=catalog_dir, store_dir=store_dir, limits=limits, **options
        )

    def _replay(self) -> int:
        return self._add_logged(self.store.replay()) if self.store is not None else 0

    def _add_logged(self, pins) -> int:
        n = 0
        for pin in pins:
            with self.lock:
                if pin.pin_id not in self.index.rows:
                    self.index.add(
                        pin.pin_id,
                        pin.vector,
                        title=pin.title,
                        image=pin.image,
                        description=pin.description,
                        source="added",
                    )
                    n += 1
        return n

    def _follow(self, every_s: float) -> None:
        """A replica's loop: add the pins the writer logged since the last look.

        A failed look (a log being rebuilt, a disk error, a bad record) is logged, counted
        (`pinclip_replica_refresh_errors` in /metrics) and retried after a doubling wait."""
        failures = 0
        while True:
            time.sleep(backoff_s(every_s, failures))
            try:
                self.replayed += self._add_logged(self.store.follow())
            except Exception as err:
                failures += 1
                self.follow_errors += 1
                log.warning(
                    "replica refresh failed (%d in a row; next try in %.1f s): %s: %s",
                    failures,
                    backoff_s(every_s, failures),
                    type(err).__name__,
                    err,
                    exc_info=failures == 1,
                )
            else:
                if failures:
                    log.info("replica refresh works again after %d failures", failures)
                failures = 0

    def _batchers(self, wait_ms: float, max_batch: int):
        if wait_ms <= 0 or max_batch <= 1:  # no micro-batching: one forward per request
            return (
                lambda text: self.embedder.embed_texts([text])[0],
                lambda pixels: self.embedder.embed_images(pixels[None])[0],
            )
        texts = MicroBatcher(self.embedder.embed_texts, max_batch=max_batch, wait_s=wait_ms / 1e3)
        images = MicroBatcher(
            lambda batch: self.embedder.embed_images(np.stack(batch)),
            max_batch=max_batch,
            wait_s=wait_ms / 1e3,
        )
        return texts, images

    # ----- checks ---------------------------------------------------------------------------
    def check_k(self, k: int, offset: int = 0) -> int:
        if not 1 <= k <= self.limits.max_k:
            raise ServiceError(422, f"k={k} is out of range; use 1 <= k <= {self.limits.max_k}")
        if offset < 0 or offset + k > self.limits.max_results:
            raise ServiceError(
                422,
                f"offset={offset} is out of range; use 0 <= offset and offset + k <= "
                f"{self.limits.max_results}",
            )
        return k

    def row(self, pin_id: str) -> int:
        row = self.index.rows.get(pin_id)
        if row is None:
            raise ServiceError(404, f"unknown pin {pin_id!r}")
        return row

    def decode_image(self, data: bytes):
        """Validate an upload with the catalog's image checks (pixel limit before decoding)."""
        if not data:
            raise ServiceError(400, "the uploaded file is empty; send an image file")
        if len(data) > self.limits.max_body_bytes:
            raise ServiceError(
                413, f"upload is {len(data):,} bytes > limit {self.limits.max_body_bytes:,}"
            )
        with tempfile.NamedTemporaryFile(suffix=".upload") as f:
            f.write(data)
            f.flush()
            try:
                return load_image(f.name, max_pixels=self.limits.max_pixels)
            except ImageError as err:
                status = 413 if "pixel limit" in err.reason else 400
                detail = err.detail.split(": ", 1)[-1].replace(f.name, "the upload")
                raise ServiceError(status, f"upload rejected: {err.reason} ({detail})") from None

    # ----- queries --------------------------------------------------------------------------
    def _results(
        self, vector: np.ndarray, k: int, offset: int = 0, exclude: str | None = None
    ) -> list[dict]:
        """Results `offset` .. `offset + k` of the ranking (one page of it)."""
        with self.lock:
            hits = self.index.search(vector[None], offset + k + (1 if exclude else 0))[0]
            pins = [self.index.pin(hit.row) for hit in hits]
        out = []
        for hit, pin in zip(hits, pins, strict=True):
            pin_id = pin["pin_id"]
            if pin_id == exclude:
                continue
            out.append(
                {
                    "pin_id": pin_id,
                    "title": pin["title"],
                    "score": round(hit.score, 6),
                    "image_url": f"/v1/pins/{pin_id}/image",
                }
            )
        return out[offset : offset + k]

    def search_text(self, q: str, k: int, offset: int = 0) -> list[dict]:
        self.check_k(k, offset)
        if not q.strip():
            raise ServiceError(422, "q is empty; pass a text query, e.g. /v1/search?q=red+heart")
        if len(q) > self.limits.max_query_chars:
            raise ServiceError(
                422, f"q has {len(q)} characters > limit {self.limits.max_query_chars}"
            )
        return self._results(self._embed_texts(q), k, offset)

    def search_image(self, data: bytes, k: int, offset: int = 0) -> list[dict]:
        self.check_k(k, offset)
        pixels = self.embedder.preprocess(self.decode_image(data))
        return self._results(self._embed_images(pixels), k, offset)

    def related(self, pin_id: str, k: int, offset: int = 0) -> list[dict]:
        self.check_k(k, offset)
        with self.lock:
            vector = self.index.vector(self.row(pin_id))
        return self._results(vector, k, offset, exclude=pin_id)

    def pin(self, pin_id: str) -> dict:
        """A pin's card: its metadata and the boards it is saved to, with their titles."""
        with self.lock:
            pin = self.index.pin(self.row(pin_id))
        boards = [str(b) for b in pin["boards"]]
        return pin | {
            "boards": [{"board_id": b, "title": self.board_titles.get(b, "")} for b in boards]
        }

    def board(self, board_id: str, offset: int, limit: int) -> dict:
        """A board's title and one page of its pins (catalog order)."""
        if board_id not in self.board_titles:
            raise ServiceError(404, f"unknown board {board_id!r}")
        rows = self._board_rows().get(board_id, np.empty(0, np.int64))
        with self.lock:
            pins = [self.index.pin(int(r)) for r in rows[offset : offset + limit]]
        return {
            "board_id": board_id,
            "title": self.board_titles[board_id],
            "total": len(rows),
            "offset": offset,
            "pins": pins,
        }

    def _board_rows(self) -> dict[str, np.ndarray]:
        """board_id -> its pins' rows, built on the first board page (catalog pins only:
        pins added over the API are on no board yet)."""
        if self._boards_index is None:
            self._boards_index = self.index.board_rows()
        return self._boards_index

    def boards(self, pin_id: str, k: int, neighbors: int = 50) -> list[dict]:
        """Boards of the pin's nearest pins, each vote weighted by the neighbour's similarity."""
        self.check_k(k)
        with self.lock:
            vector = self.index.vector(self.row(pin_id))
            hits = self.index.search(vector[None], neighbors + 1)[0]
            pins = [self.index.pin(hit.row) for hit in hits]
        votes: dict[str, float] = defaultdict(float)
        for hit, pin in zip(hits, pins, strict=True):
            if pin["pin_id"] == pin_id:
                continue
            for board in pin["boards"]:
                votes[board] += max(hit.score, 0.0)
        total = sum(votes.values()) or 1.0
        ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [
            {"board_id": b, "title": self.board_titles.get(b, ""), "score": round(s / total, 6)}
            for b, s in ranked
        ]

    # ----- writes ---------------------------------------------------------------------------
    def add_pin(
        self, data: bytes, title: str = "", description: str = "", pin_id: str | None = None
    ) -> dict:
        """Embed a new pin (image + optional text), log it durably, make it searchable."""
        if self.read_only:
            raise ServiceError(403, "this server is a read-only replica; add pins on the writer")
        if self.store is None:
            raise ServiceError(403, "this server has no pin store; adding pins is disabled")
        if pin_id is not None and not PIN_ID.match(pin_id):
            raise ServiceError(422, f"pin_id {pin_id!r} is invalid; use 1-64 of A-Z a-z 0-9 _ . -")
        pin_id = pin_id or f"u-{uuid.uuid4().hex[:12]}"
        if pin_id in self.index.rows:
            raise ServiceError(409, f"pin {pin_id!r} already exists")
        image = self.decode_image(data)
        text = pin_text(title, description)
        pixels = self.embedder.preprocess(image)[None]
        vector = self.embedder.embed_pins(pixels, [text])["pin_emb"][0]
        name = f"{pin_id}.{_image_format(data)}"
        with self.lock:
            if pin_id in self.index.rows:
                raise ServiceError(409, f"pin {pin_id!r} already exists")
            self.store.save_image(name, data)
            self.store.append(AddedPin(pin_id, title, text, name, vector, description))
            self.index.add(
                pin_id, vector, title=title, image=name, description=description, source="added"
            )
        return {"pin_id": pin_id, "title": title, "image_url": f"/v1/pins/{pin_id}/image"}

    # ----- files ----------------------------------------------------------------------------
    def image_path(self, pin_id: str) -> Path:
        """The pin's image file, resolved without path traversal."""
        meta = self.index.pin(self.row(pin_id))
        try:
            if meta["source"] == "added" and self.store is not None:
                path = self.store.image_path(meta["image"])
            elif self.catalog_dir is not None and meta["image"]:
                path = resolve_image_path(self.catalog_dir, meta["image"])
            else:
                raise ServiceError(
                    404, f"pin {pin_id!r} has no image here (start the server with --catalog)"
                )
        except ImageError as err:  # its reason only: the detail names the server's paths
            raise ServiceError(
                404, f"image of pin {pin_id!r} cannot be served: {err.reason}"
            ) from None
        if not path.is_file():
            raise ServiceError(404, f"image of pin {pin_id!r} is missing")
        return path

    def catalog_file(self, relative: str) -> Path:
        """An image file of the catalog; its tables (pins, boards, who saved what) stay private."""
        if self.catalog_dir is None:
            raise ServiceError(404, "no catalog configured")
        if Path(relative).suffix.lower() not in IMAGE_SUFFIXES:
            raise ServiceError(
                404, f"{relative!r} is not an image; /v1/catalog serves the catalog's images only"
            )
        try:
            path = resolve_image_path(self.catalog_dir, relative)
        except ImageError as err:
            raise ServiceError(404, f"{relative!r} cannot be served: {err.reason}") from None
        if not path.is_file():
            raise ServiceError(404, f"{relative!r} not found in the catalog")
        return path


class ModelMismatchError(InputError):
    """The index was embedded by another model: its vectors and the queries would not match."""


def check_model(
    info: dict, model_dir: str | Path, index_dir: str | Path, *, allow_mismatch: bool = False
) -> None:
    """Refuse to serve an index with a model other than the one that embedded it."""
    recorded = (info.get("model") or {}).get("fingerprint")
    if recorded is None:
        log.warning(
            "index %s does not record its model: cannot check --model %s", index_dir, model_dir
        )
        return
    served = model_fingerprint(model_dir)
    if served == recorded:
        return
    message = (
        f"index {index_dir} was embedded by model {info['model'].get('path')} (fingerprint "
        f"{recorded}) but --model {model_dir} is {'unknown' if served is None else served}: "
        "its queries would not match the indexed vectors"
    )
    if allow_mismatch:
        log.warning("%s; serving anyway (--allow-model-mismatch)", message)
        return
    raise ModelMismatchError(
        f"{message}. Serve the model the index was built with, rebuild the index with this "
        "model (`pinclip embed` + `pinclip index build`), or pass --allow-model-mismatch"
    )


def backoff_s(every_s: float, failures: int) -> float:
    """The wait before a replica's next refresh: doubling with failures in a row, capped."""
    return min(every_s * 2 ** min(failures, 16), max(every_s, MAX_BACKOFF_S))


def _image_format(data: bytes) -> str:
    """A file extension for an upload that already decoded (so a browser gets its type)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return {"JPEG": "jpg"}.get(img.format or "", (img.format or "img").lower())
