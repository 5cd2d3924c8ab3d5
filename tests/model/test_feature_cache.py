"""The cached path (frozen stem maps, frozen text states from disk) equals the full forward."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from pinclip.model import FeatureCache, PinCLIP


def png_bytes(seed: int, size: int = 80) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def frozen() -> PinCLIP:
    return PinCLIP.from_preset("tiny", freeze_stem=True, freeze_text_encoder=True)


def test_cached_forward_equals_full_forward(frozen: PinCLIP, texts, tmp_path) -> None:
    images = [png_bytes(i) for i in range(5)]
    cache = FeatureCache(tmp_path, frozen)
    image_keys = cache.precompute_images(images, batch_size=2, progress=False)
    text_keys = cache.precompute_texts(texts + ["x", "y"], batch_size=2, progress=False)
    assert len(set(image_keys)) == 5 and len(list(tmp_path.rglob("*.safetensors"))) == 10

    transform = frozen.image_transform(train=False)
    pixels = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    text = frozen.tokenize(texts + ["x", "y"])
    frozen.eval()
    with torch.no_grad():
        full = frozen(images=pixels, text=text)
        cached = frozen(
            image_features=cache.load_image_features(image_keys),
            text_states=cache.load_text_states(text_keys),
        )
    for name in ("image_emb", "text_emb", "pin_emb"):
        torch.testing.assert_close(getattr(cached, name), getattr(full, name), atol=1e-5, rtol=1e-5)


def test_cache_training_step_updates_only_unfrozen_parts(frozen: PinCLIP, texts, tmp_path) -> None:
    cache = FeatureCache(tmp_path, frozen)
    keys = cache.precompute_images([png_bytes(i) for i in range(4)], progress=False)
    tkeys = cache.precompute_texts(texts + ["z"], progress=False)
    frozen.train()
    out = frozen(
        image_features=cache.load_image_features(keys), text_states=cache.load_text_states(tkeys)
    )
    (out.pin_emb @ out.image_emb.T).sum().backward()
    assert frozen.image.proj[0].weight.grad is not None
    assert all(p.grad is None for p in frozen.image.stem.parameters())
    frozen.zero_grad(set_to_none=True)


def test_keys_depend_on_content_and_preprocessing(frozen: PinCLIP, tmp_path) -> None:
    cache = FeatureCache(tmp_path, frozen)
    a, b = png_bytes(0), png_bytes(1)
    assert cache.image_key(a) == cache.image_key(bytes(a)) != cache.image_key(b)
    assert cache.text_key("cat") != cache.text_key("cat ")
    other_size = PinCLIP.from_preset(
        "tiny", freeze_stem=True, freeze_text_encoder=True, **{"image.image_size": 96}
    )
    assert FeatureCache(tmp_path, other_size).image_key(a) != cache.image_key(a)
    other_weights = PinCLIP.from_preset("tiny", seed=1, freeze_stem=True, freeze_text_encoder=True)
    assert FeatureCache(tmp_path, other_weights).image_key(a) != cache.image_key(a)


def test_second_precompute_reuses_files(frozen: PinCLIP, tmp_path) -> None:
    cache = FeatureCache(tmp_path, frozen)
    keys = cache.precompute_images([png_bytes(0)], progress=False)
    path = next(tmp_path.rglob("*.safetensors"))
    mtime = path.stat().st_mtime_ns
    assert cache.precompute_images([png_bytes(0)], progress=False) == keys
    assert path.stat().st_mtime_ns == mtime


def test_cache_errors(tmp_path) -> None:
    unfrozen = PinCLIP.from_preset("tiny")
    with pytest.raises(ValueError, match="freeze_stem"):
        FeatureCache(tmp_path, unfrozen).precompute_images([png_bytes(0)], progress=False)
    with pytest.raises(ValueError, match="freeze_text_encoder"):
        FeatureCache(tmp_path, unfrozen).precompute_texts(["a"], progress=False)
    frozen = PinCLIP.from_preset("tiny", freeze_stem=True)
    with pytest.raises(ValueError, match="cannot decode image"):
        FeatureCache(tmp_path, frozen).precompute_images([b"not an image"], progress=False)
    with pytest.raises(KeyError, match="precompute"):
        FeatureCache(tmp_path, frozen).load_image_features(["0" * 64])
