"""pinclip.model: the PinCLIP hybrid-ViT image tower, text tower, fusion and heads.

model = PinCLIP.from_preset("small")          # or create_model("tiny"), from_pretrained(dir)
out = model(images=x, text=model.tokenize(["a red fox"]))
out.image_emb, out.text_emb, out.pin_emb      # L2-normalised [B, D]
"""

from ._registry import list_presets, preset_config
from .config import FusionConfig, ImageConfig, PinCLIPConfig, TextConfig
from .feature_store import FeatureStore, FeatureStoreError, FeatureTable
from .heads import matryoshka_slice
from .model import PinCLIP, PinCLIPOutput, create_model, preset_info
from .pretrained import MissingWeightsError, efficientnet_lite0_classifier

__all__ = [
    "FeatureStore",
    "FeatureStoreError",
    "FeatureTable",
    "FusionConfig",
    "ImageConfig",
    "MissingWeightsError",
    "PinCLIP",
    "PinCLIPConfig",
    "PinCLIPOutput",
    "TextConfig",
    "create_model",
    "efficientnet_lite0_classifier",
    "list_presets",
    "matryoshka_slice",
    "preset_config",
    "preset_info",
]
