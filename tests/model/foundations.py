"""Tiny random foundation models, written in each library's own on-disk format.

Only the EfficientNet-Lite0 and MiniLM weights exist offline, so every backbone family is
tested with a tiny randomly initialised model saved exactly as the library saves a real one
(`save_pretrained` folders of CLIP / SigLIP / SigLIP 2 with a tokenizer built offline from
the MiniLM files; an open_clip model-config JSON plus a safetensors file; a timm ViT in the
folder `save_for_hf` writes; a PinCLIP model dir) and loaded through the spec a user writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: A 32 px image in 8 px patches: 16 patch tokens; widths of 32 and 3-4 layers.
IMAGE = 32
EMBED = 16


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    from pinclip.model.pretrained import minilm_path

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def _text_cfg(tok, max_len: int) -> dict:
    return {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "max_position_embeddings": max_len,
    }


def _vision_cfg() -> dict:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "image_size": IMAGE,
        "patch_size": 8,
    }


def hf_clip(root: Path) -> str:
    from transformers import CLIPConfig, CLIPModel

    tok = _minilm_tokenizer()
    text = {**_text_cfg(tok, 32), "eos_token_id": tok.sep_token_id, "pad_token_id": 0}
    torch.manual_seed(1)
    model = CLIPModel(
        CLIPConfig(text_config=text, vision_config=_vision_cfg(), projection_dim=EMBED)
    )
    model.save_pretrained(root)
    tok.save_pretrained(root)
    return f"hf:{root}"


def hf_siglip(root: Path) -> str:
    from transformers import SiglipConfig, SiglipModel

    tok = _minilm_tokenizer()
    text = {**_text_cfg(tok, 16), "projection_size": EMBED}
    vision = {**_vision_cfg(), "hidden_size": EMBED, "num_attention_heads": 2}
    torch.manual_seed(2)
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(root)
    tok.save_pretrained(root)
    return f"hf:{root}"


def hf_siglip2(root: Path) -> str:
    from transformers import Siglip2Config, Siglip2Model

    tok = _minilm_tokenizer()
    text = {**_text_cfg(tok, 16), "projection_size": EMBED}
    vision = {**_vision_cfg(), "hidden_size": EMBED, "num_patches": (IMAGE // 8) ** 2}
    vision.pop("image_size")
    torch.manual_seed(3)
    Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).save_pretrained(root)
    tok.save_pretrained(root)
    return f"hf:{root}"


def open_clip_model(root: Path) -> str:
    import open_clip
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    cfg = {
        "embed_dim": EMBED,
        "vision_cfg": {
            "image_size": IMAGE,
            "layers": 4,
            "width": 32,
            "patch_size": 8,
            "head_width": 16,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 3,
        },
    }
    config_file = root / "pinclip-tiny-vit.json"
    config_file.write_text(json.dumps(cfg))
    open_clip.add_model_config(config_file)
    torch.manual_seed(4)
    model = open_clip.create_model("pinclip-tiny-vit", pretrained=None)
    weights = root / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return f"open_clip:{config_file}@{weights}"


def timm_vit(root: Path) -> str:
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(5)
    args = {"img_size": IMAGE, "patch_size": 8, "embed_dim": 32, "depth": 4, "num_heads": 2}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **args)
    save_for_hf(model, root, model_args=args, safe_serialization=True)
    return f"timm:{root}"


def pinclip_model(root: Path) -> str:
    from pinclip.model import PinCLIP

    PinCLIP.from_preset("tiny", pretrained=False, seed=6).save_pretrained(root)
    return f"pinclip:{root}"


#: family name -> builder of a tiny model in that library's format (returns the spec)
BUILDERS = {
    "hf-clip": hf_clip,
    "hf-siglip": hf_siglip,
    "hf-siglip2": hf_siglip2,
    "open_clip": open_clip_model,
    "timm-vit": timm_vit,
    "pinclip": pinclip_model,
}
