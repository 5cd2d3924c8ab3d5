"""What the frozen parts compute, for a whole catalog: content-keyed, sharded, memory-mapped.

A frozen stem maps an image to the same stride-16/32 maps every epoch, and a frozen text
encoder maps a text to the same token states: compute them once and read them back by
row with `model(image_features=..., text_states=...)`, so training runs only the rest.

Layout (`root/<kind>-<namespace>/seg-<hash>/`): each segment holds up to `segment_rows`
items as `.npy` arrays (`keys.npy` plus `map0.npy`, `map1.npy` for images; ragged
`tokens.npy` + `offsets.npy` for texts) opened with `mmap_mode="r"`: reading a batch
touches only its rows, and the pages are page cache the kernel can evict, so a training
process's memory does not grow with the catalog.

Keys are content hashes (the first 16 bytes of sha256 of the image bytes or the UTF-8
text) inside a namespace that covers the frozen weights, the preprocessing and the
storage dtype: a changed image or text gets a new key and is computed; unchanged ones are
found in existing segments, whatever catalog or run wrote them.

Builds are resumable and shareable: the missing items are cut, in catalog order, into
fixed-size chunks; each chunk is written by one worker process into a temporary folder
and renamed into place whole (`atomic_dir`), so a kill loses at most the chunks in flight
and a rebuild plans exactly the chunks that were not written (identical bytes to an
uninterrupted build). Under DDP the ranks split the chunks and meet at a barrier.
Cached images use the eval transform (no augmentation): that is the price of caching.

On the CPU, with onnxruntime installed, a build of at least `ONNX_FROM_ITEMS` items into
an fp16 or int8 store (not the exact fp32 one) runs the frozen parts as ONNX graphs,
exported once per namespace (`frozen-<kind>.onnx` beside the segments): ~5x eager torch for
the stem, ~1.5x for the text encoder on this project's 2-core machine (BENCHMARKS.md §7).
They are used only after they agree with eager torch on the build's first items (two batch
sizes) to within `ONNX_TOLERANCE` of each output's largest value, below fp16 storage's own
rounding; otherwise (and for a stem or encoder cut by tuned blocks, or if the runtime fails
mid-build) the build runs torch.

`text_compute="int8"` trades exactness for speed where the text encoder dominates a CPU build
(two thirds of its FLOPs with `small`): the encoder's graph with dynamic int8 MatMuls
(`quantize_matmul_dynamic`, `INT8_TEXT_OPTION`), ~1.6x its fp32 graph with AVX-512 VNNI; every
token state within cosine `INT8_MIN_COS` of torch on the build's first items, or the build
stops with an error.
Those rows live in a namespace of their own (never mixed with exact ones), and every build of
that namespace, however small, runs the int8 graph.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from torch import nn

from pinclip.atomic import atomic_dir, write_with
from pinclip.errors import PinclipError
from pinclip.memory import bound_heap_growth
from pinclip.progress import Progress

from .text_tower import tokenize

if TYPE_CHECKING:
    from .model import PinCLIP

log = logging.getLogger(__name__)

__all__ = ["DTYPES", "FeatureStore", "FeatureStoreError", "FeatureTable", "module_fingerprint"]

FORMAT = "pinclip-features/1"
KEY_DTYPE = np.dtype("S16")
#: Storage dtypes: fp16 (default), fp32 (exact), int8 (per-channel/per-token absmax scale).
DTYPES = {"fp16": np.float16, "fp32": np.float32, "int8": np.int8}
STALE_TEMP_SECONDS = 3600  # a temp segment untouched this long belongs to a killed build
#: Largest |ONNX - torch| difference allowed, as a share of the output's largest |value|.
ONNX_TOLERANCE = 1e-3
ONNX_OPSET = 17
ONNX_FROM_ITEMS = 512  # fewer items than this do not pay for an export (~5 s for `small`)
#: How the frozen text encoder runs while the store is built: torch/ONNX fp32, or int8 MatMuls.
TEXT_COMPUTE = ("fp32", "int8")
#: Which MatMuls run in int8. Per-token cosine to torch over 512 texts of emoji / mdi /
#: synthetic pins (`small`'s MiniLM-L6, every token): "matmul-all" min 0.947 / 0.964 / 0.955,
#: ~2.1x the fp32 graph; "matmul-keep-ffn-out" (the feed-forward output MatMuls, whose GELU
#: inputs have outliers, stay fp32) min 0.975 / 0.982 / 0.974, mean 0.995, ~1.6x.
INT8_TEXT_OPTION = "matmul-keep-ffn-out"
#: Least cosine of an int8-computed token state to torch's (the lowest above: 0.974).
INT8_MIN_COS = 0.96

ImageInput = bytes | str | Path


class FeatureStoreError(PinclipError):
    """A feature store cannot be built or read; the message names the item or folder."""


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over a module's state (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----- encoding: float32 features -> stored arrays -----------------------------------------
def _encode(x: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """`x` [n, a, ...] as stored: a cast, or int8 with one scale per (row, a)."""
    if dtype != "int8":
        return {"": x.astype(DTYPES[dtype])}
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    scale = np.abs(flat).max(axis=2) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(flat / scale[..., None]), -127, 127).astype(np.int8)
    return {"": q.reshape(x.shape), ".scale": scale.astype(np.float16)}


def _decode_rows(arrays: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    x = np.asarray(arrays[""][rows], dtype=np.float32)
    if ".scale" in arrays:
        scale = np.asarray(arrays[".scale"][rows], dtype=np.float32)
        x = x * scale.reshape(scale.shape + (1,) * (x.ndim - scale.ndim))
    return x


# ----- the frozen parts a worker runs ------------------------------------------------------
def _read_image(item: ImageInput) -> bytes:
    if isinstance(item, bytes):
        return item
    try:
        return Path(item).read_bytes()
    except OSError as e:
        raise FeatureStoreError(f"cannot read image {item}: {e.strerror or e}") from None


def _open_image(item: ImageInput) -> Image.Image:
    try:
        if isinstance(item, bytes):
            return Image.open(io.BytesIO(item)).convert("RGB")
        from pinclip.data.images import load_image

        return load_image(item)
    except Exception as e:  # Pillow raises several types for bad files
        where = item if isinstance(item, str | Path) else f"<{len(item)} bytes>"
        raise FeatureStoreError(f"cannot decode image {where}: {e}") from e


def split_transform(transform: Any) -> tuple[list[Any], list[Any]] | None:
    """(per-image PIL steps, batch tensor steps) of an eval `Compose`, cut at its ToTensor;
    None when it has no such cut. The tensor steps (scaling, Normalize) run once per batch:
    per image they are tiny torch ops, each a wake-up of the intra-op thread pool, which on a
    busy machine cost more than the image's decoding (671 vs 37 images/s measured, load 9)."""
    steps = list(getattr(transform, "transforms", []))
    cut = next((i for i, t in enumerate(steps) if "ToTensor" in type(t).__name__), None)
    return None if cut is None else (steps[:cut], steps[cut + 1 :])


class _StemGraph(nn.Module):
    """The stem's stored maps before `fine_grid` pooling (an adaptive pool has no ONNX form
    for a map whose size the exporter cannot see; the pooling runs in torch after)."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.tower.stem(pixels)
        return tuple(maps[i] for i in self.tower.stem_indices)


class _TextGraph(nn.Module):
    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.tower.encoder_states(
            {"input_ids": input_ids, "attention_mask": attention_mask}
        )
        return states["hidden_states"], states["attention_mask"]


class _Frozen:
    """The frozen part of one kind, picklable into worker processes; eager torch, or the
    ONNX graph at `onnx_path` once `use_onnx` has checked it."""

    def __init__(self, model: PinCLIP, kind: str) -> None:
        self.kind = kind
        self.onnx_path: Path | None = None
        self._session: Any = None
        if kind == "images":
            self.module: nn.Module = model.image
            self.transform = model.image_transform(train=False)
            self.batch_size = 128  # fewer thread-pool joins per image; ~100 MiB of activations
        else:
            self.module = model.text
            self.tokenizer = model.tokenizer
            self.max_length = model.config.text.max_length
            self.batch_size = 256

    def __getstate__(self) -> dict[str, Any]:  # a worker opens its own session
        return {**self.__dict__, "_session": None}

    def pixels(self, items: Sequence[Any]) -> torch.Tensor:
        """[B, 3, S, S] eval-transformed images (NHWC in memory, the stem's layout): decoding
        and resizing per image, scaling and normalising once for the batch (the same
        arithmetic as per image)."""
        split = split_transform(self.transform)
        if split is None:
            return torch.stack([self.transform(_open_image(i)) for i in items])
        pil_steps, tensor_steps = split

        def prepare(item: Any) -> np.ndarray:
            image = _open_image(item)
            for step in pil_steps:
                image = step(image)
            return np.asarray(image, dtype=np.uint8)

        arrays = [prepare(item) for item in items]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
        for step in tensor_steps:
            x = step(x)
        return x

    @torch.no_grad()
    def maps(self, pixels: torch.Tensor, onnx: bool = True) -> list[np.ndarray]:
        """float32 stored maps of a batch of pixels."""
        if onnx and self.onnx_path is not None:
            raw = self._run({"pixels": pixels.contiguous().numpy()})
            if raw is not None:
                pooled = self.module._pool_fine([torch.from_numpy(m) for m in raw])
                return [m.float().numpy() for m in pooled]
        self.module.eval()
        return [m.float().numpy() for m in self.module.stem_features(pixels)]

    @torch.no_grad()
    def states(self, texts: Sequence[str], onnx: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(tokens [T, D] float32, lengths): the kept encoder states of `texts`, unpadded."""
        if onnx and self.onnx_path is not None:
            tok = tokenize(self.tokenizer, texts, self.max_length, return_tensors="np")
            feeds = {k: np.asarray(v, dtype=np.int64) for k, v in tok.items()}
            out = self._run(feeds)
            if out is not None:
                keep = out[1].astype(bool)
                return out[0][keep].astype(np.float32), keep.sum(1)
        self.module.eval()
        states = self.module.encoder_states(tokenize(self.tokenizer, texts, self.max_length))
        mask = states["attention_mask"].bool()
        return states["hidden_states"][mask].float().numpy(), mask.sum(1).numpy()

    def __call__(self, items: Sequence[Any]) -> list[np.ndarray] | tuple[np.ndarray, np.ndarray]:
        """float32 features of `items`: [maps] for images, (tokens [T, D], lengths) for texts."""
        return self.maps(self.pixels(items)) if self.kind == "images" else self.states(items)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
        """The graph's outputs; None (and torch from then on) if the runtime fails."""
        try:
            if self._session is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = torch.get_num_threads()
                opts.inter_op_num_threads = 1
                self._session = ort.InferenceSession(
                    str(self.onnx_path), opts, providers=["CPUExecutionProvider"]
                )
            return self._session.run(None, feeds)
        except Exception as e:  # e.g. a shape the trace fixed: the batch runs in torch
            log.warning("feature store: the ONNX %s graph failed (%s); using torch", self.kind, e)
            self.onnx_path = self._session = None
            return None

    # ----- the ONNX graph ------------------------------------------------------------------
    def exportable(self) -> bool:
        """A CPU module without a cut (tuned blocks make the stored part a slice)."""
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            return False
        params = list(self.module.parameters())
        if not params or params[0].device.type != "cpu":
            return False
        if self.kind == "images":
            tower = self.module
            return getattr(tower, "cut", True) is None and hasattr(tower, "stem_indices")
        return not getattr(self.module, "tune_last_layers", 1)

    def use_onnx(self, path: Path, sample: Sequence[Any], int8: bool = False) -> bool:
        """Export the graph to `path` (once per namespace; with `int8`, its dynamic-int8 copy
        beside it) and keep it when it agrees with torch on `sample`; False (torch stays)
        when it cannot be exported or disagrees."""
        if not sample or not self.exportable():
            return False
        try:
            if not path.is_file():
                self._export(path, sample)
            if int8:
                fp32, path = path, path.with_suffix(".int8.onnx")
                if not path.is_file():
                    from .quantize import quantize_matmul_dynamic

                    quantize_matmul_dynamic(fp32, path.with_suffix(".tmp"), INT8_TEXT_OPTION)
                    os.replace(path.with_suffix(".tmp"), path)
            self.onnx_path, self._session = path, None
            pairs = []
            for batch in (sample, sample[:1]):  # batch sizes other than the export's 2
                if self.kind == "images":
                    pixels = self.pixels(batch)
                    pairs += zip(self.maps(pixels), self.maps(pixels, onnx=False), strict=True)
                else:
                    pairs.append((self.states(batch)[0], self.states(batch, onnx=False)[0]))
                if self.onnx_path is None:
                    raise RuntimeError("the graph failed on the sample")
            off = ""  # why the graph is not used
            if int8:  # int8 moves every value: each row's direction is what must hold
                cos = min(_min_row_cosine(a, b) for a, b in pairs)
                if cos < INT8_MIN_COS:
                    off = (
                        f"the int8 {self.kind} graph's states reach cosine {cos:.4f} to "
                        f"torch's (< {INT8_MIN_COS})"
                    )
            else:
                err = max(
                    float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in pairs
                )
                if err > ONNX_TOLERANCE:
                    off = (
                        f"the ONNX {self.kind} graph differs from torch by {err:.2g} of the "
                        f"largest value (> {ONNX_TOLERANCE}); computing in torch"
                    )
        except Exception as e:  # an exporter or runtime gap: the build runs torch
            log.info("feature store: %s run in torch (no ONNX graph: %s)", self.kind, e)
            self.onnx_path = self._session = None
            return False
        if off:
            log.warning("feature store: %s", off)
            self.onnx_path = self._session = None
            return False
        return True

    @torch.no_grad()
    def _export(self, path: Path, sample: Sequence[Any]) -> None:
        self.module.eval()
        if self.kind == "images":
            graph: nn.Module = _StemGraph(self.module)
            args: tuple = (self.pixels(sample[:2]).contiguous(memory_format=torch.channels_last),)
            names, outputs = ["pixels"], ["map0", "map1"]
            dynamic = {n: {0: "batch"} for n in names + outputs}
        else:
            graph = _TextGraph(self.module)
            tok = tokenize(self.tokenizer, sample[:2], self.max_length)
            args = (tok["input_ids"], tok["attention_mask"])
            names, outputs = ["input_ids", "attention_mask"], ["hidden_states", "mask"]
            dynamic = {n: {0: "batch", 1: "tokens"} for n in names + outputs}
        buf = io.BytesIO()
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # the fused layer op has no ONNX form
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic
                torch.onnx.export(
                    graph, args, buf, input_names=names, output_names=outputs,
                    dynamic_axes=dynamic, opset_version=ONNX_OPSET, do_constant_folding=True,
                    dynamo=False,
                )  # fmt: skip
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        write_with(path, lambda fh: fh.write(buf.getvalue()))


def _min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(((a * b).sum(1) / np.maximum(norms, 1e-12)).min()) if len(a) else 1.0


def _write_segment(
    frozen: _Frozen, path: Path, keys: np.ndarray, items: Sequence[Any], dtype: str
) -> int:
    """Compute one chunk and write it as a segment folder (atomically); returns its rows."""
    with atomic_dir(path) as tmp:
        np.save(tmp / "keys.npy", keys)
        bs = frozen.batch_size
        if frozen.kind == "images":
            files: dict[str, np.ndarray] = {}
            with ThreadPoolExecutor(1) as pool:  # decodes the next batch while this one runs
                batches = [items[start : start + bs] for start in range(0, len(items), bs)]
                for b, maps in enumerate(_ahead(pool, frozen, batches)):
                    start = b * bs
                    for level, m in enumerate(maps):
                        for suffix, arr in _encode(m, dtype).items():
                            name = f"map{level}{suffix}"
                            if name not in files:  # one preallocated file per array: bounded RAM
                                files[name] = np.lib.format.open_memmap(
                                    tmp / f"{name}.npy",
                                    mode="w+",
                                    dtype=arr.dtype,
                                    shape=(len(items), *arr.shape[1:]),
                                )
                            files[name][start : start + len(arr)] = arr
            for arr in files.values():
                arr.flush()
            del files
        else:
            # Batches of similar length (fewest pad tokens: ~1.3x), rows back in item order;
            # a chunk's order is a function of its items, so a rebuild writes the same bytes.
            order = np.argsort([len(t) for t in items], kind="stable")
            pieces: list[np.ndarray] = [np.zeros(0)] * len(items)
            for start in range(0, len(items), bs):
                rows = order[start : start + bs]
                tokens, length = frozen([items[i] for i in rows])
                for i, piece in zip(rows, np.split(tokens, np.cumsum(length)[:-1]), strict=True):
                    pieces[i] = piece
            lengths = np.array([len(p) for p in pieces], dtype=np.int64)
            for suffix, arr in _encode(np.concatenate(pieces)[:, None], dtype).items():
                np.save(tmp / f"tokens{suffix}.npy", arr[:, 0] if suffix == "" else arr)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            np.save(tmp / "offsets.npy", offsets)
    return len(keys)


def _ahead(pool: ThreadPoolExecutor, frozen: _Frozen, batches: list[Sequence[Any]]):
    """Stem maps of each batch, its pixels prepared in `pool` while the previous batch runs."""
    pending = pool.submit(frozen.pixels, batches[0]) if batches else None
    for b in range(len(batches)):
        pixels = pending.result()
        if b + 1 < len(batches):
            pending = pool.submit(frozen.pixels, batches[b + 1])
        yield frozen.maps(pixels)


_WORKER: dict[str, Any] = {}


def _worker_init(frozen: _Frozen, threads: int, n_items: int) -> None:
    bound_heap_growth(n_items)  # a spawned worker starts with glibc's defaults
    torch.set_num_threads(threads)
    _WORKER["frozen"] = frozen


def _worker_segment(path: Path, keys: np.ndarray, items: list, dtype: str) -> int:
    return _write_segment(_WORKER["frozen"], path, keys, items, dtype)


# ----- reading ------------------------------------------------------------------------------
class _Segment:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict:  # to worker processes: reopen the maps, never copy them
        return {"path": self.path, "_arrays": None}

    def keys(self) -> np.ndarray:
        return np.load(self.path / "keys.npy", mmap_mode="r")

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {
                p.name[: -len(".npy")]: np.load(p, mmap_mode="r")
                for p in self.path.glob("*.npy")
                if p.name != "keys.npy"
            }
        return self._arrays

    def field(self, name: str) -> dict[str, np.ndarray]:
        arrays = self.arrays()
        return {s: arrays[name + s] for s in ("", ".scale") if name + s in arrays}


class FeatureTable:
    """Row i holds the features of item i of the list it was built for, read on demand."""

    def __init__(self, kind: str, segments: list[_Segment], seg_of: np.ndarray, row_of: np.ndarray):
        self.kind = kind
        self.segments = segments
        self.seg_of = seg_of  # [N] int32: which segment holds item i
        self.row_of = row_of  # [N] int64: its row there

    def __len__(self) -> int:
        return len(self.seg_of)

    def _groups(self, idx: np.ndarray):
        seg = self.seg_of[idx]
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            yield self.segments[s], where, self.row_of[idx[where]]

    def _width(self) -> int:
        return int(self.segments[0].arrays()["tokens"].shape[1]) if self.segments else 0

    def image_features(self, idx: np.ndarray) -> list[torch.Tensor]:
        """Stem maps [B, C, h, w] (float32) of items `idx`, for `forward(image_features=...)`."""
        idx = np.asarray(idx, dtype=np.int64)
        out: list[np.ndarray] = []
        for segment, where, rows in self._groups(idx):
            order = np.argsort(rows)  # memmap reads in file order
            level = 0
            while f"map{level}" in segment.arrays():
                x = _decode_rows(segment.field(f"map{level}"), rows[order])
                if len(out) <= level:
                    out.append(np.empty((len(idx), *x.shape[1:]), np.float32))
                out[level][where[order]] = x
                level += 1
        return [torch.from_numpy(x) for x in out]

    def text_states(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Right-padded encoder states and mask of items `idx`, for `forward(text_states=...)`."""
        idx = np.asarray(idx, dtype=np.int64)
        pieces: list[np.ndarray | None] = [None] * len(idx)
        for segment, where, rows in self._groups(idx):
            offsets = segment.arrays()["offsets"]
            tokens = segment.field("tokens")
            for i, r in zip(where, rows, strict=True):
                pieces[i] = _decode_rows(tokens, np.arange(offsets[r], offsets[r + 1]))
        length = max(max((len(p) for p in pieces), default=0), 1)
        width = pieces[0].shape[1] if pieces else self._width()
        hidden = torch.zeros(len(idx), length, width)
        mask = torch.zeros(len(idx), length, dtype=torch.long)
        for i, p in enumerate(pieces):
            hidden[i, : len(p)] = torch.from_numpy(p)
            mask[i, : len(p)] = 1
        return {"hidden_states": hidden, "attention_mask": mask}


# ----- the store ----------------------------------------------------------------------------
class FeatureStore:
    """Frozen-stem maps and frozen text-encoder states of a model, for any list of items."""

    def __init__(
        self,
        root: str | Path,
        model: PinCLIP,
        *,
        dtype: str = "fp16",
        text_compute: str = "fp32",
        segment_rows: int = 2048,
    ) -> None:
        if dtype not in DTYPES:
            raise FeatureStoreError(f"feature dtype {dtype!r}: use one of {sorted(DTYPES)}")
        if text_compute not in TEXT_COMPUTE:
            raise FeatureStoreError(f"text compute {text_compute!r}: use one of {TEXT_COMPUTE}")
        self.root = Path(root)
        self.model = model
        self.dtype = dtype
        self.text_compute = text_compute
        self.segment_rows = segment_rows
        cfg = model.config
        transform = repr(model.image_transform(train=False))
        tok = model.tokenizer
        text_id = f"{type(tok).__name__}:{len(tok)}:{cfg.text.max_length}:{cfg.text.keep_tokens}"
        # The frozen part below any tuned top blocks, and the cut itself: a store for a
        # different cut never shares (or returns) rows. No cut keeps the original namespace.
        image_cut = f"|below-last-{cfg.image.tune_last_blocks}" * bool(cfg.image.tune_last_blocks)
        text_cut = f"|below-last-{cfg.text.tune_last_layers}" * bool(cfg.text.tune_last_layers)
        self._ns = {
            "images": f"{FORMAT}|{module_fingerprint(model.image.frozen_part())}|{transform}|"
            f"{cfg.image.fine_grid}|{dtype}{image_cut}",
            "texts": f"{FORMAT}|{module_fingerprint(model.text.frozen_part())}|{text_id}|"
            f"{dtype}{text_cut}" + f"|int8-{INT8_TEXT_OPTION}" * (text_compute == "int8"),
        }

    # ----- keys -----------------------------------------------------------------------------
    def folder(self, kind: str) -> Path:
        """Where segments of `kind` ("images" or "texts") live for this model and dtype."""
        ns = hashlib.sha256(self._ns[kind].encode()).hexdigest()[:16]
        return self.root / f"{kind}-{ns}"

    def image_key(self, image: ImageInput) -> bytes:
        return self._key("images", _read_image(image))

    def text_key(self, text: str) -> bytes:
        return self._key("texts", text.encode("utf-8"))

    def _key(self, kind: str, data: bytes) -> bytes:
        return hashlib.sha256(self._ns[kind].encode() + data).digest()[:16]

    def _keys(self, kind: str, items: Sequence[Any]) -> np.ndarray:
        key = self.image_key if kind == "images" else self.text_key
        # filled in place: a list of a bytes object per item first would cost ~60 B per item
        return np.fromiter((key(i) for i in items), dtype=KEY_DTYPE, count=len(items))

    # ----- index of what is stored ----------------------------------------------------------
    def _segments(self, kind: str) -> list[_Segment]:
        folder = self.folder(kind)
        if not folder.is_dir():
            return []
        return [_Segment(p) for p in sorted(folder.glob("seg-*")) if (p / "keys.npy").is_file()]

    def _index(self, kind: str) -> tuple[list[_Segment], np.ndarray, np.ndarray, np.ndarray]:
        """(segments, sorted keys, their segment, their row)."""
        segments = self._segments(kind)
        keys = [s.keys() for s in segments]
        all_keys = np.concatenate(keys) if keys else np.zeros(0, KEY_DTYPE)
        seg = np.concatenate(
            [np.full(len(k), i, np.int32) for i, k in enumerate(keys)] or [np.zeros(0, np.int32)]
        )
        row = np.concatenate([np.arange(len(k)) for k in keys] or [np.zeros(0, np.int64)])
        order = np.argsort(all_keys, kind="stable")
        return segments, all_keys[order], seg[order], row[order]

    def table(self, kind: str, items: Sequence[Any] | np.ndarray) -> FeatureTable:
        """Read-only view of stored features for `items` (or their keys); all must be stored."""
        keys = items if isinstance(items, np.ndarray) else self._keys(kind, items)
        segments, stored, seg, row = self._index(kind)
        pos = np.searchsorted(stored, keys)
        pos = np.minimum(pos, max(len(stored) - 1, 0))
        found = (stored[pos] == keys) if len(stored) else np.zeros(len(keys), bool)
        if not found.all():
            first = int(np.flatnonzero(~found)[0])
            raise FeatureStoreError(
                f"{(~found).sum()} of {len(keys)} {kind} are not in the feature store "
                f"{self.folder(kind)} (first: item {first}); build them with FeatureStore.build"
            )
        return FeatureTable(kind, segments, seg[pos], row[pos])

    # ----- build ----------------------------------------------------------------------------
    def build(
        self,
        kind: str,
        items: Sequence[Any],
        *,
        workers: int = 1,
        console: Console | None = None,
    ) -> FeatureTable:
        """Compute what is missing for `items` (images: paths or bytes; texts: strings) and
        return their table. `workers` processes compute chunks in parallel; under DDP every
        rank calls this and they split the chunks. Progress goes to `console` (None: quiet)."""
        if kind not in ("images", "texts"):
            raise ValueError(f"kind {kind!r}: use 'images' or 'texts'")
        if kind == "images" and not self.model.config.freeze_stem:
            raise FeatureStoreError(
                "stem features can only be stored for a frozen stem (freeze_stem=True)"
            )
        if kind == "texts" and not self.model.config.freeze_text_encoder:
            raise FeatureStoreError(
                "text states can only be stored for a frozen encoder (freeze_text_encoder=True)"
            )
        from pinclip.distributed import get_rank, get_world_size, is_distributed

        bound_heap_growth(len(items))  # at scale freed batch buffers go back to the kernel
        keys = self._keys(kind, items)
        chunks = self._plan(kind, keys)
        folder = self.folder(kind)
        folder.mkdir(parents=True, exist_ok=True)
        _drop_stale_temps(folder)
        rank, world = get_rank(), get_world_size()
        if is_distributed():
            import torch.distributed as dist

            dist.barrier()  # every rank planned against the same store state
        mine = chunks[rank::world]
        tasks = [
            (folder / f"seg-{hashlib.sha256(keys[c].tobytes()).hexdigest()[:24]}", c) for c in mine
        ]
        console = console or Console(quiet=True)
        frozen_part = _Frozen(self.model, kind)
        todo = sum(len(c) for _, c in tasks)
        int8 = kind == "texts" and self.text_compute == "int8"
        if int8 and todo:  # the namespace promises int8 rows: every build runs that graph
            sample = [items[i] for i in tasks[0][1][:8]]
            if not frozen_part.use_onnx(folder / f"frozen-{kind}.onnx", sample, int8=True):
                raise FeatureStoreError(
                    "text_compute='int8' (data.feature_text_compute) runs the text encoder as "
                    "an int8 ONNX graph on the CPU: it needs onnxruntime, a CPU model and a "
                    "frozen encoder whose int8 states agree with torch (see the log); set "
                    "data.feature_text_compute=fp32"
                )
        elif todo >= ONNX_FROM_ITEMS and self.dtype != "fp32":  # fp32, exact store: torch
            sample = [items[i] for i in tasks[0][1][:8]]
            frozen_part.use_onnx(folder / f"frozen-{kind}.onnx", sample)
        with Progress(console=console) as progress:
            bar = progress.add_task(f"feature store: {kind}", total=sum(len(c) for c in mine))
            if workers <= 1 or len(tasks) <= 1:
                for path, c in tasks:
                    rows = _write_segment(
                        frozen_part, path, keys[c], [items[i] for i in c], self.dtype
                    )
                    progress.advance(bar, rows)
            else:
                threads = max(1, (os.cpu_count() or 1) // workers)
                with ProcessPoolExecutor(
                    max_workers=min(workers, len(tasks)),
                    mp_context=get_context("spawn"),  # fork after torch threads start can hang
                    initializer=_worker_init,
                    initargs=(frozen_part, threads, len(items)),
                ) as pool:
                    futures = [
                        pool.submit(
                            _worker_segment, path, keys[c], [items[i] for i in c], self.dtype
                        )
                        for path, c in tasks
                    ]
                    for future in as_completed(futures):
                        progress.advance(bar, future.result())
        if is_distributed():
            import torch.distributed as dist

            if world > 1 and chunks:
                console.print(f"feature store: rank {rank} done, waiting for the other ranks")
            dist.barrier()
        return self.table(kind, keys)

    def _plan(self, kind: str, keys: np.ndarray) -> list[np.ndarray]:
        """Item indices to compute, in fixed-size chunks of the missing keys in catalog order:
        after a kill, the chunks already written drop out whole and the rest stay the same."""
        _, stored, _, _ = self._index(kind)
        if len(stored):
            pos = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
            missing = stored[pos] != keys
        else:
            missing = np.ones(len(keys), bool)
        todo = np.flatnonzero(missing)
        _, first = np.unique(keys[todo], return_index=True)  # one item per distinct key
        todo = todo[np.sort(first)]
        n = self.segment_rows
        return [todo[i : i + n] for i in range(0, len(todo), n)]


def _drop_stale_temps(folder: Path) -> None:
    """Remove temp segments a killed build left behind (a live build touches its own often)."""
    now = time.time()
    for tmp in folder.glob(".seg-*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except FileNotFoundError:
            pass
