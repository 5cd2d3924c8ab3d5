"""Presets are data: one YAML file per size in `presets/`, read here."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from pinclip._typed_config import build, choice_error, nest

from .config import PinCLIPConfig


def _preset_files() -> dict[str, Any]:
    root = resources.files("pinclip.model") / "presets"
    return {f.name.removesuffix(".yaml"): f for f in root.iterdir() if f.name.endswith(".yaml")}


def list_presets() -> list[str]:
    """Names of the shipped model presets, smallest first by convention of the files."""
    order = {"tiny": 0, "small": 1, "base": 2}
    return sorted(_preset_files(), key=lambda n: (order.get(n, 99), n))


def preset_config(name: str, **overrides: Any) -> PinCLIPConfig:
    """The config of preset `name`, with dotted (`**{"image.depth": 4}`) or nested
    (`fusion={"depth": 2}`) overrides applied and type-checked (a bad one is a ConfigError)."""
    files = _preset_files()
    if name not in files:
        raise choice_error("model.preset", name, tuple(list_presets()))
    data = yaml.safe_load(files[name].read_text()) or {}
    return build(PinCLIPConfig, [(data, f"preset {name!r}"), (nest(overrides), "the overrides")])
