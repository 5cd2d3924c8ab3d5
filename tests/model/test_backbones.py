"""The backbone registry: every family builds from the spec a user writes, the ViT tower taps
several depths, and the aligned start embeds exactly as the foundation does (1e-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pinclip.errors import ConfigError
from pinclip.model import PinCLIP, preset_config
from pinclip.model.backbones import BACKBONES, load_foundation, split_spec

from .foundations import BUILDERS, EMBED

TEXTS = ["a red fox jumps over the fence", "espresso", "mountain cabin at night"]
TWO_TOWERS = ["hf-clip", "hf-siglip", "hf-siglip2", "open_clip", "pinclip"]


@pytest.fixture(scope="session")
def foundation_specs(tmp_path_factory) -> dict[str, str]:
    """Each family's tiny model written once per session: family -> spec."""
    root = tmp_path_factory.mktemp("foundations")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def backbone_config(family: str, spec: str, **overrides):
    """The tiny preset on `spec`; two-tower families embed in the foundation's dimension."""
    if family not in ("pinclip", "timm-vit"):
        overrides = {"embed_dim": EMBED, "matryoshka_dims": (8, EMBED), **overrides}
    return preset_config("tiny", backbone=spec, **overrides)


def _native(family: str, spec: str, pixels: torch.Tensor, model: PinCLIP):
    """(image, text) embeddings computed by the foundation's own library, unit norm."""
    arg = split_spec(spec)[1]
    if family.startswith("hf"):
        from transformers import AutoModel

        ref = AutoModel.from_pretrained(arg).eval()
        tok = model.tokenize(TEXTS)
        if family == "hf-siglip2":
            from transformers.models.siglip2.image_processing_siglip2 import (
                convert_image_to_patches,
            )

            patches = torch.stack([convert_image_to_patches(p, 8) for p in pixels])
            grid = pixels.shape[-1] // 8
            image = ref.get_image_features(
                pixel_values=patches,
                pixel_attention_mask=torch.ones(patches.shape[:2], dtype=torch.long),
                spatial_shapes=torch.tensor([[grid, grid]] * len(pixels)),
            )
        else:
            image = ref.get_image_features(pixel_values=pixels)
        text = ref.get_text_features(**tok)
        image, text = image.pooler_output, text.pooler_output
    elif family == "open_clip":
        import open_clip

        from pinclip.model.pretrained import load_state_file

        config_file, weights = arg.split("@")
        open_clip.add_model_config(config_file)
        ref = open_clip.create_model("pinclip-tiny-vit", pretrained=None).eval()
        ref.load_state_dict(load_state_file(weights))
        image = ref.encode_image(pixels)
        text = ref.encode_text(open_clip.get_tokenizer("pinclip-tiny-vit")(TEXTS))
    else:  # a PinCLIP foundation: its own image and text embeddings
        ref = PinCLIP.from_pretrained(arg).eval()
        out = ref(images=pixels, text=ref.tokenize(TEXTS))
        image, text = out.image_emb, out.text_emb
    return F.normalize(image, dim=-1), F.normalize(text, dim=-1)


@pytest.mark.parametrize("family", TWO_TOWERS)
@torch.no_grad()
def test_aligned_start_embeds_as_the_foundation(foundation_specs, family) -> None:
    spec = foundation_specs[family]
    model = PinCLIP(backbone_config(family, spec), seed=0).eval()
    size = model.config.image.image_size
    pixels = torch.randn(len(TEXTS), 3, size, size, generator=torch.Generator().manual_seed(0))
    out = model(images=pixels, text=model.tokenize(TEXTS))
    image, text = _native(family, spec, pixels, model)
    torch.testing.assert_close(out.image_emb, image, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.text_emb, text, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pin_emb, F.normalize(image + text, dim=-1), atol=1e-5, rtol=0)
    # ... and the foundation's own zero-shot path (the `zero-shot:` baseline) is the same
    foundation = load_foundation(spec)
    torch.testing.assert_close(foundation.encode_image(pixels), image, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        foundation.encode_text(model.tokenize(TEXTS)), text, atol=1e-5, rtol=0
    )


def test_vit_levels_are_three_evenly_spaced_blocks_by_default(foundation_specs) -> None:
    model = PinCLIP(backbone_config("timm-vit", foundation_specs["timm-vit"]), seed=0)
    assert model.image.taps == (0, 2, 3)  # 4 blocks: round(4 * j / 3) - 1
    x = torch.randn(2, 3, 32, 32)
    feats = model.image.stem_features(x)
    assert [tuple(f.shape) for f in feats] == [(2, 17, 32)] * 3 + [(2, 32)]
    out = model.image(features=feats)
    assert out.levels.unique().tolist() == [0, 1, 2]
    assert model.fusion.type_embed.num_embeddings == 4  # three image levels + text
    explicit = PinCLIP(
        backbone_config("timm-vit", foundation_specs["timm-vit"], **{"image.levels": (1, 3)})
    )
    assert explicit.image.taps == (1, 3)
    with pytest.raises(ConfigError, match="image.levels"):
        PinCLIP(backbone_config("timm-vit", foundation_specs["timm-vit"], **{"image.levels": (9,)}))


def test_registry_names_every_family_and_rejects_unknown_ones() -> None:
    assert BACKBONES.names() == ["timm", "open_clip", "hf", "pinclip", "hf-vlm"]
    with pytest.raises(ConfigError, match="did you mean 'open_clip'"):
        load_foundation("openclip:ViT-B-32")
    with pytest.raises(ConfigError, match="FAMILY:ARG"):
        preset_config("tiny", backbone="siglip")


def test_a_wrong_embed_dim_for_an_aligned_start_says_which(foundation_specs) -> None:
    with pytest.raises(ConfigError, match=f"embed_dim={EMBED}"):
        PinCLIP(preset_config("tiny", backbone=foundation_specs["hf-clip"]))
    # without the aligned start any embed_dim is fine (fresh heads)
    PinCLIP(preset_config("tiny", backbone=foundation_specs["hf-clip"], aligned_start=False))


def test_timm_cnn_spec_is_the_stride_16_32_path() -> None:
    cfg = preset_config("tiny", backbone="timm:test_efficientnet@")
    model = PinCLIP(cfg, load_pretrained=False)
    assert type(model.image).__name__ == "ImageTower"
    assert model.config.image.stem == "test_efficientnet"
