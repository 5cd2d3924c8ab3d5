"""Shapes, unit norms and single-modality calls for every preset; config errors."""

from __future__ import annotations

import pytest
import torch

from pinclip.errors import ConfigError
from pinclip.model import PinCLIP, list_presets, matryoshka_slice, preset_config

# Presets with pretrained towers take > 10 s on 2 cores: marked slow (still run in CI).
PRESETS = [n if n == "tiny" else pytest.param(n, marks=pytest.mark.slow) for n in list_presets()]


def test_presets_are_shipped() -> None:
    assert {"tiny", "small", "base"} <= set(list_presets())


@pytest.mark.parametrize("name", PRESETS)
def test_forward_shapes_and_unit_norms(name: str, preset_model, texts) -> None:
    model = preset_model(name).eval()
    cfg = model.config
    s = cfg.image.image_size
    images = torch.randn(len(texts), 3, s, s)
    with torch.no_grad():
        out = model(images=images, text=model.tokenize(texts))
    n_patches = (s // 16) ** 2 + (s // 32) ** 2
    assert out.image_tokens.shape == (3, 1 + n_patches, cfg.width)
    assert out.text_tokens.shape[:2] == out.text_mask.shape
    for emb in (out.image_emb, out.text_emb, out.pin_emb):
        assert emb.shape == (3, cfg.embed_dim)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    # The fused embedding sees both modalities: it differs from image-only and text-only ones.
    with torch.no_grad():
        image_only = model(images=images)
        text_only = model(text=model.tokenize(texts))
    assert image_only.text_emb is None and text_only.image_emb is None
    torch.testing.assert_close(image_only.image_emb, out.image_emb)
    torch.testing.assert_close(text_only.text_emb, out.text_emb)
    for single in (image_only.pin_emb, text_only.pin_emb):
        torch.testing.assert_close(single.norm(dim=-1), torch.ones(3))
        assert not torch.allclose(single, out.pin_emb, atol=1e-4)


@pytest.mark.parametrize("late", [True, False])
def test_hybrid_fusion_late_path(late: bool, texts) -> None:
    """fusion.late: pin = normalise(image_emb + text_emb + projected [FUSE]); else [FUSE] alone."""
    model = PinCLIP.from_preset("tiny", **{"fusion.late": late}).eval()
    torch.nn.init.zeros_(model.pin_head.proj.weight)  # silence the mid-fusion part
    images, tok = torch.randn(3, 3, 64, 64), model.tokenize(texts)
    with torch.no_grad():
        out, image_only = model(images=images, text=tok), model(images=images)
    if late:
        expected = torch.nn.functional.normalize(out.image_emb + out.text_emb, dim=-1)
        torch.testing.assert_close(out.pin_emb, expected)
        torch.testing.assert_close(image_only.pin_emb, out.image_emb)  # an upload: image alone
    else:
        assert torch.count_nonzero(out.pin_emb) == 0  # nothing but the (silenced) [FUSE] state


def test_global_token_is_a_projection_of_the_stem_pools() -> None:
    """image.global_token adds proj(global pools) to CLS: zeroing that projection gives exactly
    the plain-CLS tower with the same other weights; a non-zero one changes the pooled state."""
    with_token = PinCLIP.from_preset("tiny").eval()
    plain = PinCLIP.from_preset("tiny", **{"image.global_token": False}).eval()
    assert plain.image.global_proj is None
    plain.load_state_dict(
        {k: v for k, v in with_token.state_dict().items() if "global_proj" not in k}
    )
    features = with_token.image.stem_features(torch.randn(2, 3, 64, 64))
    with torch.no_grad():
        ours, base = (
            with_token.image(features=features).pooled,
            plain.image(features=features).pooled,
        )
        assert not torch.allclose(ours, base, atol=1e-4)
        with_token.image.global_proj.weight.zero_()
        with_token.image.global_proj.bias.zero_()
        torch.testing.assert_close(with_token.image(features=features).pooled, base)


def test_other_input_size_interpolates_position_embeddings(tiny: PinCLIP) -> None:
    out = tiny.eval()(images=torch.randn(2, 3, 96, 96))
    assert out.image_tokens.shape[1] == 1 + 6 * 6 + 3 * 3


def test_padding_does_not_change_text_embedding(tiny: PinCLIP) -> None:
    tiny.eval()
    with torch.no_grad():
        alone = tiny(text=tiny.tokenize(["cat"])).text_emb
        batched = tiny(text=tiny.tokenize(["cat", "a much longer caption about a cat"])).text_emb
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_trainable_parameter(tiny: PinCLIP, texts) -> None:
    tiny.train()
    tiny.zero_grad()
    out = tiny(images=torch.randn(2, 3, 64, 64), text=tiny.tokenize(texts[:2]))
    loss = sum(e.sum() for e in (out.image_emb, out.text_emb, out.pin_emb))
    (loss + tiny.logit_scale + tiny.logit_bias).backward()
    no_grad = [n for n, p in tiny.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


def test_logit_parameters_and_matryoshka(tiny: PinCLIP) -> None:
    assert tiny.logit_scale.requires_grad and tiny.logit_bias.requires_grad
    assert tiny.logit_scale.item() == pytest.approx(torch.log(torch.tensor(1 / 0.07)).item())
    assert tiny.logit_bias.item() == -10.0
    emb = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)
    for d in tiny.config.matryoshka_dims:
        part = matryoshka_slice(emb, d)
        assert part.shape == (4, d)
        torch.testing.assert_close(part.norm(dim=-1), torch.ones(4))
    with pytest.raises(ValueError, match="matryoshka dim"):
        matryoshka_slice(emb, 64)


def test_same_seed_same_weights_other_seed_differs() -> None:
    a, b, c = (PinCLIP.from_preset("tiny", seed=s) for s in (0, 0, 1))
    pa, pb, pc = (torch.nn.utils.parameters_to_vector(m.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_overrides_and_bad_config() -> None:
    cfg = preset_config("tiny", width=32, **{"image.depth": 3}, fusion={"depth": 2})
    assert (cfg.width, cfg.image.depth, cfg.fusion.depth, cfg.fusion.heads) == (32, 3, 2, 2)
    with pytest.raises(ConfigError, match="image.dpeth.*Did you mean 'image.depth'"):
        preset_config("tiny", **{"image.dpeth": 3})
    with pytest.raises(ConfigError, match="image.depth.*Integer"):
        preset_config("tiny", **{"image.depth": "three"})  # type-checked, not passed through
    with pytest.raises(ConfigError, match="'huge' is not one of 'tiny', 'small', 'base'"):
        preset_config("huge")
    with pytest.raises(ValueError, match="heads"):
        preset_config("tiny", width=33)
    with pytest.raises(ValueError, match="matryoshka_dims"):
        preset_config("tiny", matryoshka_dims=[8, 64])


def test_bad_inputs_are_clear_errors(tiny: PinCLIP) -> None:
    with pytest.raises(ValueError, match="needs images"):
        tiny()
    with pytest.raises(TypeError, match="list of strings"):
        tiny.tokenize("not a list")
    with pytest.raises(ValueError, match="stride"):
        PinCLIP.from_preset("tiny", **{"image.stem": "test_vit"})


def test_freeze_flags() -> None:
    model = PinCLIP.from_preset("tiny", freeze_stem=True, freeze_text_encoder=True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    stem = {f"image.stem.{n}" for n, _ in model.image.stem.named_parameters()}
    encoder = {f"text.encoder.{n}" for n, _ in model.text.encoder.named_parameters()}
    assert frozen == stem | encoder
    model.train()
    assert not model.image.stem.training and not model.text.encoder.training
    assert model.image.blocks.training and model.fusion.training
    # A frozen stem's BatchNorm statistics do not move in training mode.
    before = {k: v.clone() for k, v in model.image.stem.state_dict().items()}
    model(images=torch.randn(2, 3, 64, 64))
    after = model.image.stem.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.num_parameters(trainable_only=True) < model.num_parameters()

    model = PinCLIP.from_preset("tiny", freeze_stem=False, freeze_text_encoder=True)
    assert all(p.requires_grad for p in model.image.parameters())
    assert not any(p.requires_grad for p in model.text.encoder.parameters())


def test_image_transform_train_augments_eval_is_deterministic(tiny: PinCLIP) -> None:
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8))
    size = tiny.config.image.image_size
    evaluate, train = tiny.image_transform(train=False), tiny.image_transform(train=True)
    assert evaluate(image).shape == train(image).shape == (3, size, size)
    assert torch.equal(evaluate(image), evaluate(image))
    assert not torch.equal(train(image), train(image))
