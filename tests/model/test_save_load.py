"""save_pretrained / from_pretrained: a bitwise exact round trip."""

from __future__ import annotations

import json

import pytest
import torch

from pinclip.model import PinCLIP


@pytest.mark.parametrize("name", ["tiny", pytest.param("small", marks=pytest.mark.slow)])
def test_round_trip_is_bitwise_exact(name: str, texts, tmp_path) -> None:
    model = PinCLIP.from_preset(name, pretrained=False)
    with torch.no_grad():  # move away from the init so a reload from init would not match
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    loaded = PinCLIP.from_pretrained(tmp_path)
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    s = model.config.image.image_size
    images, text = torch.randn(2, 3, s, s), model.tokenize(texts[:2])
    assert torch.equal(loaded.tokenize(texts[:2])["input_ids"], text["input_ids"])
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(images, text).pin_emb, loaded(images, text).pin_emb)


def test_from_pretrained_needs_no_weight_packages(preset_model, tmp_path, monkeypatch) -> None:
    preset_model("small").save_pretrained(tmp_path)
    import pinclip.model.pretrained as pre

    def fail(*a, **k):
        raise AssertionError("from_pretrained must not touch the pip weight packages")

    monkeypatch.setattr(pre, "lite0_weights_path", fail)
    monkeypatch.setattr(pre, "minilm_path", fail)
    PinCLIP.from_pretrained(tmp_path)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        PinCLIP.from_pretrained(tmp_path)
    PinCLIP.from_preset("tiny").save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["format"] = "something-else"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="pinclip-model"):
        PinCLIP.from_pretrained(tmp_path)
