"""A VLM backbone (`vlm.spec: hf-vlm:DIR`): two tiny random families loaded by path exactly as
a user's folder is; the three passes, pooling, prompts, LoRA-only gradients, checkpoints
without base weights, from_pretrained and merge-and-save round trips."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from pinclip.errors import ConfigError
from pinclip.model import PinCLIP, preset_config
from pinclip.model.vlm import is_base_key

FAMILIES = ["qwen2_vl", "idefics3"]
TEXTS = ["a red fox in the snow", "espresso in a white cup", "mountain cabin 🏔️"]


def vlm_model(tiny_vlms, family: str, seed: int = 0, **overrides) -> PinCLIP:
    cfg = preset_config(
        "tiny", **{"backbone": f"hf-vlm:{tiny_vlms[family]}", "image.image_size": 64, **overrides}
    )
    return PinCLIP(cfg, seed=seed)


def _inputs(model: PinCLIP, n: int = 3):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 64, 64, generator=g), model.tokenize(TEXTS[:n])


@pytest.mark.parametrize("family", FAMILIES)
def test_three_passes_feed_the_heads(tiny_vlms, family):
    model = vlm_model(tiny_vlms, family).eval()
    images, text = _inputs(model)
    with torch.no_grad():
        both = model(images=images, text=text)
        alone_image = model(images=images)
        alone_text = model(text=text)
    for emb in (both.image_emb, both.text_emb, both.pin_emb):
        assert emb.shape == (3, model.config.embed_dim)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    # the image and text passes do not see the other modality; the joint pass does
    torch.testing.assert_close(alone_image.image_emb, both.image_emb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone_text.text_emb, both.text_emb, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(alone_image.pin_emb, both.pin_emb, atol=1e-3)
    # a row's embedding does not depend on its batch (padding is masked, pooling per row)
    with torch.no_grad():
        one = model(images=images[1:2], text=model.tokenize(TEXTS[1:2]))
    torch.testing.assert_close(one.pin_emb, both.pin_emb[1:2], atol=1e-5, rtol=1e-4)
    assert model.vlm.visual_tokens > 0


def test_prompts_pooling_and_layer_come_from_the_config(tiny_vlms):
    base = vlm_model(tiny_vlms, "qwen2_vl").eval()
    images, text = _inputs(base)
    with torch.no_grad():
        ref = base(images=images, text=text).text_emb
        for change in (
            {"vlm.text_prompt": "Pin text: {text}"},
            {"vlm.pooling": "mean"},
            {"vlm.layer": 1},
        ):
            other = vlm_model(tiny_vlms, "qwen2_vl", **change).eval()
            assert not torch.allclose(other(text=text).text_emb, ref, atol=1e-4), change
    prompt = base.vlm._prompts["text"]
    rendered = base.tokenizer.decode(prompt["prefix"]["input_ids"])
    assert rendered.startswith("<|im_start|>user\n")  # the model's own chat template


def test_bad_vlm_settings_are_config_errors(tiny_vlms):
    with pytest.raises(ConfigError, match="text"):
        preset_config("tiny", **{"backbone": "hf-vlm:x", "vlm.joint_prompt": "no slot"})
    with pytest.raises(ConfigError, match="vlm.layer"):
        vlm_model(tiny_vlms, "idefics3", **{"vlm.layer": 9})
    with pytest.raises(ConfigError, match="lora_targets"):
        vlm_model(tiny_vlms, "idefics3", **{"vlm.lora_targets": ["no_such_module"]})


@pytest.mark.parametrize("family", FAMILIES)
def test_only_adapters_and_heads_get_gradients(tiny_vlms, family):
    model = vlm_model(tiny_vlms, family, **{"vlm.gradient_checkpointing": True}).train()
    images, text = _inputs(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images=images, text=text)
        loss = (out.pin_emb @ out.image_emb.T).logsumexp(1).mean() - out.text_emb.sum() * 0.1
    loss.backward()
    named = dict(model.named_parameters())
    got = {n for n, p in named.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got, "no gradient at all"
    base = {n for n in named if n.startswith("vlm.model.") and "lora_" not in n}
    assert base and not got & base, f"base weights got gradients: {sorted(got & base)[:3]}"
    assert all(not named[n].requires_grad for n in base)
    assert any("lora_B" in n for n in got)  # B starts at zero: its gradient is the signal
    heads = {"image_head.proj.weight", "text_head.proj.weight", "pin_head.proj.weight"}
    assert heads <= got
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == {n for n in named if "lora_" in n or not n.startswith("vlm.")}


@pytest.mark.parametrize("family", FAMILIES)
def test_save_holds_adapters_and_heads_and_round_trips(tiny_vlms, family, tmp_path):
    model = vlm_model(tiny_vlms, family).eval()
    with torch.no_grad():  # move off the init (LoRA B = 0 would make adapters a no-op)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert saved and not any(is_base_key(k) for k in saved)
    assert any("lora_" in k for k in saved)
    n_base = sum(p.numel() for n, p in model.named_parameters() if is_base_key(n))
    assert sum(t.numel() for t in saved.values()) < n_base  # adapters + heads, not the base
    loaded = PinCLIP.from_pretrained(tmp_path / "m").eval()
    images, text = _inputs(model)
    with torch.no_grad():
        a, b = model(images=images, text=text), loaded(images=images, text=text)
    for key in ("image_emb", "text_emb", "pin_emb"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key

    # merge-and-save for serving: adapters folded into a base written beside the heads
    model.save_merged(tmp_path / "merged")
    assert (tmp_path / "merged" / "base" / "config.json").is_file()
    merged = PinCLIP.from_pretrained(tmp_path / "merged").eval()
    assert merged.config.vlm.lora_rank == 0 and merged.config.backbone == "hf-vlm:./base"
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        c = merged(images=images, text=text)
    for key in ("image_emb", "text_emb", "pin_emb"):
        torch.testing.assert_close(getattr(c, key), getattr(a, key), atol=1e-4, rtol=1e-3)


def test_encode_helpers_take_pil_images_and_strings(tiny_vlms):
    from PIL import Image

    model = vlm_model(tiny_vlms, "idefics3")
    images = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    pin = model.encode_pin(images, TEXTS[:2])
    assert pin.shape == (2, model.config.embed_dim)
    torch.testing.assert_close(model.encode_text(TEXTS[:2]), model.encode_text(TEXTS[:2]))


@pytest.mark.parametrize("family", FAMILIES)
def test_registry_loads_the_vlm_as_a_zero_shot_foundation(tiny_vlms, family):
    from pinclip.model.backbones import BACKBONES, load_foundation

    assert "hf-vlm" in BACKBONES and "joint" in BACKBONES.get("hf-vlm").towers
    foundation = load_foundation(f"hf-vlm:{tiny_vlms[family]}")
    assert foundation.image is None and foundation.aligned  # no towers, one model for both
    size = foundation.image_size
    pixels = torch.rand(2, 3, size, size)
    tok = foundation.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    image = foundation.encode_image(pixels)
    text = foundation.encode_text(dict(tok))
    assert image.shape == text.shape == (2, foundation.encoder.hidden_size)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(image[0], image[1])
