"""The feature store: stored frozen features give the full forward, are content-keyed,
reused, computed by parallel workers, and a build killed midway resumes to the same bytes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pinclip.model import FeatureStore, FeatureStoreError, PinCLIP


def png_bytes(seed: int, size: int = 80) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_pngs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        path.write_bytes(png_bytes(i, size=40))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def frozen() -> PinCLIP:
    return PinCLIP.from_preset("tiny", freeze_stem=True, freeze_text_encoder=True)


def _full_and_stored(model: PinCLIP, store: FeatureStore, images: list, texts: list):
    images_t = store.build("images", images)
    texts_t = store.build("texts", texts)
    transform = model.image_transform(train=False)
    pixels = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    idx = np.arange(len(images))
    model.eval()
    with torch.no_grad():
        full = model(images=pixels, text=model.tokenize(texts))
        stored = model(
            image_features=images_t.image_features(idx), text_states=texts_t.text_states(idx)
        )
    return full, stored


@pytest.mark.parametrize(("dtype", "tol"), [("fp32", 1e-5), ("fp16", 2e-3), ("int8", 2e-2)])
def test_stored_forward_equals_full_forward(frozen, texts, tmp_path, dtype, tol) -> None:
    store = FeatureStore(tmp_path, frozen, dtype=dtype, segment_rows=2)
    full, stored = _full_and_stored(
        frozen, store, [png_bytes(i) for i in range(5)], texts + ["x", "y"]
    )
    for name in ("image_emb", "text_emb", "pin_emb"):
        torch.testing.assert_close(getattr(stored, name), getattr(full, name), atol=tol, rtol=tol)
    assert len(list(store.folder("images").glob("seg-*"))) == 3  # 5 rows in segments of 2


def test_kept_text_tokens_match_the_full_forward(texts, tmp_path) -> None:
    model = PinCLIP.from_preset(
        "tiny", freeze_stem=True, freeze_text_encoder=True, **{"text.keep_tokens": 3}
    )
    store = FeatureStore(tmp_path, model, dtype="fp32")
    full, stored = _full_and_stored(model, store, [png_bytes(i) for i in range(3)], texts)
    torch.testing.assert_close(stored.pin_emb, full.pin_emb, atol=1e-5, rtol=1e-5)
    states = store.table("texts", texts).text_states(np.arange(3))
    assert states["hidden_states"].shape[1] == 3  # the mean state + 2 tokens, not the whole text


def test_training_step_updates_only_unfrozen_parts(frozen, texts, tmp_path) -> None:
    store = FeatureStore(tmp_path, frozen)
    images = store.build("images", [png_bytes(i) for i in range(4)])
    text = store.build("texts", texts + ["z"])
    frozen.train()
    idx = np.array([3, 0, 2, 1])
    out = frozen(image_features=images.image_features(idx), text_states=text.text_states(idx))
    (out.pin_emb @ out.image_emb.T).sum().backward()
    assert frozen.image.proj[0].weight.grad is not None
    assert all(p.grad is None for p in frozen.image.stem.parameters())
    frozen.zero_grad(set_to_none=True)


def test_rows_follow_the_item_list(frozen, tmp_path) -> None:
    store = FeatureStore(tmp_path, frozen, dtype="fp32", segment_rows=3)
    items = [png_bytes(i) for i in range(7)]
    table = store.build("images", items)
    reordered = store.table("images", items[::-1] + [items[2]])  # any order, duplicates too
    for a, b in zip(
        table.image_features(np.array([6, 5, 4, 3, 2, 1, 0, 2])),
        reordered.image_features(np.arange(8)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_keys_depend_on_content_preprocessing_and_dtype(frozen, tmp_path) -> None:
    store = FeatureStore(tmp_path, frozen)
    a, b = png_bytes(0), png_bytes(1)
    assert store.image_key(a) == store.image_key(bytes(a)) != store.image_key(b)
    assert store.text_key("cat") != store.text_key("cat ")
    other_size = PinCLIP.from_preset(
        "tiny", freeze_stem=True, freeze_text_encoder=True, **{"image.image_size": 96}
    )
    assert FeatureStore(tmp_path, other_size).image_key(a) != store.image_key(a)
    other_weights = PinCLIP.from_preset("tiny", seed=1, freeze_stem=True, freeze_text_encoder=True)
    assert FeatureStore(tmp_path, other_weights).image_key(a) != store.image_key(a)
    assert FeatureStore(tmp_path, frozen, dtype="fp32").folder("images") != store.folder("images")


def test_unchanged_items_are_reused_and_changed_ones_recomputed(frozen, tmp_path) -> None:
    store = FeatureStore(tmp_path, frozen, segment_rows=4)
    items = [png_bytes(i) for i in range(8)]
    store.build("images", items)
    segments = {p.name: p.stat().st_mtime_ns for p in store.folder("images").glob("seg-*")}
    assert len(segments) == 2
    store.build("images", items)  # nothing missing: nothing written
    assert {p.name: p.stat().st_mtime_ns for p in store.folder("images").glob("seg-*")} == segments
    changed = items[:3] + [png_bytes(100)] + items[4:]
    table = store.build("images", changed)
    new = {p.name for p in store.folder("images").glob("seg-*")} - set(segments)
    assert len(new) == 1 and len(np.load(store.folder("images") / new.pop() / "keys.npy")) == 1
    fresh = FeatureStore(tmp_path / "fresh", frozen, segment_rows=4).build("images", changed)
    idx = np.arange(8)
    for a, b in zip(table.image_features(idx), fresh.image_features(idx), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)  # fp16 rows; batch-size ulps


def test_store_errors(tmp_path) -> None:
    unfrozen = PinCLIP.from_preset("tiny")
    with pytest.raises(FeatureStoreError, match="freeze_stem"):
        FeatureStore(tmp_path, unfrozen).build("images", [png_bytes(0)])
    with pytest.raises(FeatureStoreError, match="freeze_text_encoder"):
        FeatureStore(tmp_path, unfrozen).build("texts", ["a"])
    frozen = PinCLIP.from_preset("tiny", freeze_stem=True)
    with pytest.raises(FeatureStoreError, match="cannot decode image"):
        FeatureStore(tmp_path, frozen).build("images", [b"not an image"])
    with pytest.raises(FeatureStoreError, match="missing.png"):
        FeatureStore(tmp_path, frozen).build("images", [tmp_path / "missing.png"])
    with pytest.raises(FeatureStoreError, match="not in the feature store"):
        FeatureStore(tmp_path, frozen).table("images", [png_bytes(5)])
    with pytest.raises(FeatureStoreError, match="dtype"):
        FeatureStore(tmp_path, frozen, dtype="bf8")


BUILD = """
import sys, torch
from pathlib import Path
from pinclip.model import FeatureStore, PinCLIP
torch.set_num_threads(1)
root, images, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
model = PinCLIP.from_preset("tiny", freeze_stem=True, freeze_text_encoder=True)
paths = sorted(images.glob("*.png"), key=lambda p: int(p.stem))
store = FeatureStore(root, model, segment_rows=4)
store.build("images", paths, workers=workers)
store.build("texts", [f"pin number {i}" for i in range(len(paths))], workers=workers)
print("done")
"""


def _run_build(root: Path, images: Path, workers: int, *, kill_after_segments: int = 0) -> bool:
    """Build in a child process (its own session); optionally SIGKILL it (and its workers)
    once some segments are on disk. True when the build ran to the end."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(root), str(images), str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if kill_after_segments:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if len(list(root.glob("images-*/seg-*"))) >= kill_after_segments:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return proc.returncode == 0


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


@pytest.mark.slow
def test_build_killed_midway_resumes_to_the_uninterrupted_bytes(tmp_path) -> None:
    images = tmp_path / "images"
    write_pngs(images, 96)  # 24 image segments, 24 text segments
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _run_build(whole, images, workers=1)
    finished = _run_build(killed, images, workers=2, kill_after_segments=3)
    n_before = len(list(killed.glob("images-*/seg-*")))
    assert not finished and 3 <= n_before < 24, "the kill should land mid-build"
    assert _run_build(killed, images, workers=2)  # parallel workers, resumed
    assert _tree(killed) == _tree(whole)  # same segments, same bytes


def test_batched_preprocessing_is_the_per_image_transform(tmp_path):
    """The store's batch preprocessing (PIL steps per image, tensor steps per batch) computes
    exactly what the model's eval transform does image by image."""
    from PIL import Image

    from pinclip.model.feature_store import _Frozen

    model = PinCLIP.from_preset("tiny", pretrained=False, freeze_stem=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(40, 30), (64, 64), (17, 90)]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(paths[-1])
    frozen = _Frozen(model, "images")
    per_image = torch.stack([frozen.transform(Image.open(p).convert("RGB")) for p in paths])
    batched = frozen.pixels(paths)
    assert batched.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(batched, per_image, rtol=0, atol=0)


def test_onnx_graphs_store_what_torch_computes(tmp_path, monkeypatch):
    """On the CPU the frozen parts run as checked ONNX graphs; their rows match eager torch."""
    pytest.importorskip("onnxruntime")
    from pinclip.model import feature_store

    monkeypatch.setattr(feature_store, "ONNX_FROM_ITEMS", 1)

    model = PinCLIP.from_preset(
        "tiny", pretrained=False, freeze_stem=True, freeze_text_encoder=True
    )
    rng = np.random.default_rng(0)
    images = []
    for i in range(12):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images[-1])
    texts = [f"pin {i} " + "word " * i for i in range(12)]
    onnx = FeatureStore(tmp_path / "onnx", model, dtype="fp16")
    tables = {k: onnx.build(k, items) for k, items in (("images", images), ("texts", texts))}
    assert (onnx.folder("images") / "frozen-images.onnx").is_file()
    assert (onnx.folder("texts") / "frozen-texts.onnx").is_file()
    monkeypatch.setattr(feature_store._Frozen, "exportable", lambda self: False)
    eager = FeatureStore(tmp_path / "eager", model, dtype="fp16")
    idx = np.arange(12)
    for a, b in zip(
        tables["images"].image_features(idx),
        eager.build("images", images).image_features(idx),
        strict=True,
    ):
        assert (a - b).abs().max() <= 2 * feature_store.ONNX_TOLERANCE * b.abs().max()
        assert not torch.equal(a, b)  # ...and truly computed by another runtime
    a = tables["texts"].text_states(idx)["hidden_states"]
    b = eager.build("texts", texts).text_states(idx)["hidden_states"]
    assert (a - b).abs().max() <= 2 * feature_store.ONNX_TOLERANCE * b.abs().max()


def test_int8_text_compute_is_close_to_torch_and_kept_apart(bert_dir, texts, tmp_path, monkeypatch):
    """`text_compute="int8"`: every build (however small) runs the int8 graph; its states are
    near torch's but not equal, in a namespace of their own; no int8 graph is an error."""
    pytest.importorskip("onnxruntime")
    from pinclip.model import feature_store

    frozen = PinCLIP.from_preset(  # a BERT (MiniLM's kind), whose ONNX graph takes any shape
        "tiny", freeze_stem=True, freeze_text_encoder=True, **{"text.encoder": bert_dir}
    )

    exact = FeatureStore(tmp_path, frozen, dtype="fp32")
    int8 = FeatureStore(tmp_path, frozen, dtype="fp32", text_compute="int8")
    assert int8.folder("texts") != exact.folder("texts")
    assert int8.folder("images") == exact.folder("images")  # the stem stays exact
    idx = np.arange(len(texts))
    a = int8.build("texts", texts).text_states(idx)["hidden_states"]
    b = exact.build("texts", texts).text_states(idx)["hidden_states"]
    assert (int8.folder("texts") / "frozen-texts.int8.onnx").is_file()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    mask = b.abs().sum(-1) > 0  # padded tokens are zeros on both sides
    assert cos[mask].min() >= feature_store.INT8_MIN_COS
    assert not torch.equal(a, b)
    monkeypatch.setattr(feature_store._Frozen, "exportable", lambda self: False)
    with pytest.raises(FeatureStoreError, match="feature_text_compute=fp32"):
        FeatureStore(tmp_path / "other", frozen, text_compute="int8").build("texts", texts)
    with pytest.raises(FeatureStoreError, match="text compute 'int4'"):
        FeatureStore(tmp_path, frozen, text_compute="int4")


def test_an_onnx_graph_that_disagrees_is_not_used(tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    from pinclip.model import feature_store

    monkeypatch.setattr(feature_store, "ONNX_FROM_ITEMS", 1)
    model = PinCLIP.from_preset("tiny", pretrained=False, freeze_stem=True)
    real_maps = feature_store._Frozen.maps

    def skewed(self, pixels, onnx=True):
        maps = real_maps(self, pixels, onnx)
        return [m * 1.01 for m in maps] if onnx and self.onnx_path else maps

    monkeypatch.setattr(feature_store._Frozen, "maps", skewed)
    store = FeatureStore(tmp_path, model, dtype="fp16")
    images = [png_bytes(i) for i in range(3)]
    with caplog.at_level("WARNING", logger="pinclip"):
        table = store.build("images", images)
    assert "computing in torch" in caplog.text
    monkeypatch.setattr(feature_store._Frozen, "maps", real_maps)
    pixels = torch.stack(
        [model.image_transform()(Image.open(io.BytesIO(b)).convert("RGB")) for b in images]
    )
    with torch.no_grad():
        direct = model.image.stem_features(pixels)
    for a, b in zip(table.image_features(np.arange(3)), direct, strict=True):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)
