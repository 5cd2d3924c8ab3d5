"""Fixtures for the model tests: one model per preset per session (building costs seconds)."""

from __future__ import annotations

import pytest
import torch

from pinclip.model import PinCLIP

_MODELS: dict[str, PinCLIP] = {}


def get_model(name: str) -> PinCLIP:
    if name not in _MODELS:
        _MODELS[name] = PinCLIP.from_preset(name)
    return _MODELS[name]


@pytest.fixture(scope="session")
def tiny() -> PinCLIP:
    return get_model("tiny")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


TEXTS = ["a red fox in the snow", "espresso in a white cup", "mountain cabin at night 🏔️"]


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return list(TEXTS)


@pytest.fixture(scope="session")
def preset_model():
    """A callable: preset name -> model, built once per session."""
    return get_model
