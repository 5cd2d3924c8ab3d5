"""Tuning the top of the frozen towers (`image.tune_last_blocks`, `text.tune_last_layers`):
the split below the tuned blocks is exact, the store is keyed by the cut, only the tuned
blocks (not the stem or encoder below them) get gradients, and a run trains them."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pinclip.errors import ConfigError
from pinclip.model import FeatureStore, PinCLIP

TEXTS = ["a red fox in the snow", "espresso in a white cup", "mountain cabin at night"]


def build(bert: str, image_blocks: int = 0, text_layers: int = 0) -> PinCLIP:
    """The tiny preset (random test_efficientnet stem: stages of 1 block, stride 16 after
    the 4th block, stride 32 after the 5th) with a BERT text encoder, both frozen."""
    model = PinCLIP.from_preset(
        "tiny",
        freeze_stem=True,
        freeze_text_encoder=True,
        **{
            "text.encoder": bert,
            "image.tune_last_blocks": image_blocks,
            "text.tune_last_layers": text_layers,
        },
    )
    return model.eval()


@pytest.fixture(scope="module")
def reference(bert_dir) -> PinCLIP:
    return build(bert_dir)


@pytest.fixture(scope="module")
def inputs(reference) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 64, 64, generator=gen), reference.tokenize(TEXTS)


def _tuned(reference: PinCLIP, **cut: int) -> PinCLIP:
    model = build(reference.config.text.encoder, **cut)
    model.load_state_dict(reference.state_dict())  # same weights, only the cut differs
    return model


@pytest.mark.parametrize(
    "cut",
    [
        {"image_blocks": 1},
        {"image_blocks": 2},
        {"text_layers": 1},
        {"image_blocks": 1, "text_layers": 2},
    ],
    ids=["image-1", "image-2-below-fine-map", "text-1", "both"],
)
def test_split_below_tuned_blocks_is_exact(reference, inputs, cut) -> None:
    """From the states below the cut, the tuned model computes what the untuned one does
    from full-depth features (image_blocks=2 cuts below the stride-16 map too)."""
    pixels, tokens = inputs
    model = _tuned(reference, **cut)
    with torch.no_grad():
        want = reference(
            image_features=reference.stem_features(pixels),
            text_states=reference.text_encoder_states(tokens),
        )
        below = model.stem_features(pixels), model.text_encoder_states(tokens)
        got = model(image_features=below[0], text_states=below[1])
        direct = model(images=pixels, text=tokens)
    for name in ("image_emb", "text_emb", "pin_emb"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=1e-6)
        torch.testing.assert_close(getattr(direct, name), getattr(want, name), rtol=0, atol=1e-6)
    if cut.get("image_blocks"):  # what is stored ends with the state entering the tuned blocks
        assert len(below[0]) == {1: 2, 2: 1}[cut["image_blocks"]]
    if cut.get("text_layers"):  # every token, of the encoder's width, not yet the final states
        assert below[1]["hidden_states"].shape[:2] == tokens["input_ids"].shape
        full = reference.text_encoder_states(tokens)["hidden_states"]
        assert not torch.allclose(below[1]["hidden_states"], full)

    # The tuned blocks really run on the stored states: change them, the output follows.
    with torch.no_grad():
        for p in model.tuned_part().parameters():
            p.add_(0.1 * torch.randn_like(p))
        moved = model(image_features=below[0], text_states=below[1])
    changed = ["image_emb"] * bool(cut.get("image_blocks")) + ["text_emb"] * bool(
        cut.get("text_layers")
    )
    for name in changed:
        assert not torch.allclose(getattr(moved, name), getattr(want, name), atol=1e-4)


def test_tuned_blocks_get_gradients_and_the_stem_below_does_not(reference, inputs) -> None:
    pixels, tokens = inputs
    model = _tuned(reference, image_blocks=1, text_layers=1).train()
    out = model(images=pixels, text=tokens)
    (out.image_emb.sum() + out.text_emb.sum()).backward()
    tuned = {id(p) for p in model.tuned_part().parameters()}
    assert tuned and all(p.requires_grad for p in model.tuned_part().parameters())
    grads = [p.grad for p in model.tuned_part().parameters() if p.ndim >= 2]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    below = [*model.image.frozen_part().parameters(), *model.text.frozen_part().parameters()]
    assert below and all(not p.requires_grad and p.grad is None for p in below)
    assert not model.image.stem.training and not model.text.encoder.training  # fixed BN stats

    groups = model.param_groups(0.05, tuned_lr=3e-5)
    tuned_groups = [g for g in groups if g.get("lr") == 3e-5]
    assert {id(p) for g in tuned_groups for p in g["params"]} == tuned
    assert not tuned & {id(p) for g in groups if "lr" not in g for p in g["params"]}
    with pytest.raises(ValueError, match="tuned_lr"):
        model.param_groups(0.05)
    assert len(reference.param_groups(0.05)) == 2  # nothing tuned: today's two groups


def test_store_namespace_includes_the_cut(reference, tmp_path) -> None:
    def folders(model: PinCLIP) -> tuple[str, str]:
        store = FeatureStore(tmp_path, model)
        return store.folder("images").name, store.folder("texts").name

    plain = folders(reference)
    image1, image2 = (
        folders(_tuned(reference, image_blocks=1)),
        folders(_tuned(reference, image_blocks=2)),
    )
    text1 = folders(_tuned(reference, text_layers=1))
    assert len({plain[0], image1[0], image2[0]}) == 3  # one store per image cut
    assert image1[1] == plain[1]  # the text store is untouched by an image cut
    assert text1[0] == plain[0] and text1[1] != plain[1]

    # Only the frozen part below the cut keys the store: training the tuned blocks keeps it.
    trained = _tuned(reference, image_blocks=1, text_layers=1)
    before = folders(trained)
    with torch.no_grad():
        for p in trained.tuned_part().parameters():
            p.add_(1.0)
    assert folders(trained) == before
    with torch.no_grad():
        next(trained.image.frozen_part().parameters()).add_(1.0)
    assert folders(trained)[0] != before[0]


def test_store_rows_are_the_states_below_the_cut(reference, tmp_path) -> None:
    model = _tuned(reference, image_blocks=1, text_layers=1)
    images = []
    for seed in range(3):
        buf = io.BytesIO()
        rng = np.random.default_rng(seed)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        images.append(buf.getvalue())
    store = FeatureStore(tmp_path, model, dtype="fp32")
    rows = np.arange(3)
    stored_images = store.build("images", images).image_features(rows)
    stored_texts = store.build("texts", TEXTS).text_states(rows)
    transform = model.image_transform(train=False)
    pixels = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    with torch.no_grad():
        want = model(images=pixels, text=model.tokenize(TEXTS))
        got = model(image_features=stored_images, text_states=stored_texts)
    torch.testing.assert_close(got.pin_emb, want.pin_emb, rtol=0, atol=1e-5)


def test_tuning_an_unfrozen_or_scratch_part_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="freeze_stem=true"):
        PinCLIP.from_preset("tiny", pretrained=False, **{"image.tune_last_blocks": 1})
    with pytest.raises(ConfigError, match="scratch"):
        PinCLIP.from_preset(
            "tiny", pretrained=False, freeze_text_encoder=True, **{"text.tune_last_layers": 1}
        )
    with pytest.raises(ConfigError, match="has 5 blocks"):
        PinCLIP.from_preset(
            "tiny", pretrained=False, freeze_stem=True, **{"image.tune_last_blocks": 6}
        )


def test_a_run_trains_the_tuned_blocks_at_their_own_lr(tiny_catalog, bert_dir, tmp_path) -> None:
    """End to end: stored states below the cut, the tuned blocks move, the stem below not."""
    from pinclip.train import load_config, train

    overrides = [
        f"data.catalog={tiny_catalog}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.build_if_missing=null",
        f"run_dir={tmp_path / 'run'}",
        "model.preset=tiny",
        "model.overrides.freeze_stem=true",
        "model.overrides.image.tune_last_blocks=1",
        "model.overrides.freeze_text_encoder=true",
        f"model.overrides.text.encoder={bert_dir}",
        "model.overrides.text.tune_last_layers=1",
        "batch_size=16",
        "max_steps=3",
        "val_every=3",
        "ckpt_every=3",
        "tensorboard=false",
        "optim.warmup_steps=1",
        "optim.tuned_lr=1e-3",
        "threads=1",
    ]
    result = train(load_config(None, overrides))
    assert result.steps == 3
    init = build(bert_dir, image_blocks=1, text_layers=1)
    final = PinCLIP.from_pretrained(tmp_path / "run" / "final")
    assert (final.config.image.tune_last_blocks, final.config.text.tune_last_layers) == (1, 1)
    for tower in ("image", "text"):
        before, after = getattr(init, tower), getattr(final, tower)
        pairs = zip(before.tuned_part().parameters(), after.tuned_part().parameters(), strict=True)
        assert any(not torch.equal(a, b) for a, b in pairs), tower
        frozen = zip(
            before.frozen_part().state_dict().values(),
            after.frozen_part().state_dict().values(),
            strict=True,
        )
        assert all(torch.equal(a, b) for a, b in frozen), tower
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
