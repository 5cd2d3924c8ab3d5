"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclip.data.builders.synthetic import build_synthetic_catalog


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    """The one tiny synthetic catalog (240 pins, seed 0, 32 px), built once per session.

    Shared by training, evaluation, the demo and the fault tests: treat it as read-only
    (copy it with `shutil.copytree` to change it)."""
    root = tmp_path_factory.mktemp("catalog") / "syn"
    build_synthetic_catalog(root, pins=240, seed=0, size=32, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory) -> dict[str, Path]:
    """Tiny random VLMs of two families (`save_pretrained` folders with their processors),
    built once per session: family -> the folder a `hf-vlm:` spec names."""
    from pinclip.model.vlm_tiny import TINY_VLMS, build_tiny_vlm

    root = tmp_path_factory.mktemp("vlms")
    return {family: build_tiny_vlm(family, root / family) for family in TINY_VLMS}


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> str:
    """A 3-layer, width-32 BERT with MiniLM's tokenizer, as a local HF model folder: the
    architecture MiniLM has, built in milliseconds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pinclip.model.pretrained import minilm_path

    folder = tmp_path_factory.mktemp("bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return str(folder)
