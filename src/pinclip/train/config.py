"""Typed training configuration: dataclasses, YAML files in `configs/`, `key=value` overrides.

OmegaConf's structured configs give type checking and reject unknown keys; we add the
nearest valid key to the error so a typo is a one-second fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError


class ConfigError(ValueError):
    """A config file or override is invalid; the message says what to change."""


@dataclass
class DataConfig:
    catalog: str = "data/emoji"
    build_if_missing: str | None = "emoji"  # builder run when the catalog is missing; null: error
    check_images: bool = True
    cold_frac: float = 0.1
    val_frac: float = 0.05
    split_seed: int = 0
    sampler: str = "coboard"  # "coboard" or "random_walk"
    walk_top_k: int = 32
    walk_count: int = 64
    walk_length: int = 4
    walk_restart: float = 0.5
    cache_dir: str = "cache"  # frozen-feature and neighbor caches, shared by runs


@dataclass
class ModelConfig:
    preset: str = "small"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossSection:
    kind: str = "infonce"  # or "siglip"
    fuse_weight: float = 0.5
    nbr_weight: float = 1.0  # λ; 0 is the plain CLIP-style objective
    nbr_terms: list[str] = field(default_factory=lambda: ["pin_pin", "image_pin", "text_pin"])
    logq: bool = False
    matryoshka_dims: list[int] = field(default_factory=list)  # empty: the model's own


@dataclass
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    accum_steps: int = 1


@dataclass
class TrainConfig:
    run_dir: str = "runs/emoji-small"
    seed: int = 0
    epochs: int = 10
    max_steps: int = 0  # 0: epochs decide
    batch_size: int = 128
    val_every: int = 0  # steps; 0: once per epoch
    ckpt_every: int = 0  # steps; 0: once per epoch
    keep_last: int = 2
    device: str = "auto"  # auto, cpu, cuda
    threads: int = 0  # torch intra-op threads; 0: leave torch's default
    tensorboard: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimConfig = field(default_factory=OptimConfig)


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for name in node:
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        value = node[name] if OmegaConf.is_dict(node) else None
        if OmegaConf.is_dict(value) and not dotted.endswith("overrides"):
            keys += _all_keys(value, dotted + ".")
    return keys


def _unknown_key_error(key: str, source: str) -> ConfigError:
    valid = _all_keys(OmegaConf.structured(TrainConfig))
    hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown config key '{key}' in {source}.{suggestion}")


def _merge(base: Any, other: Any, source: str) -> Any:
    try:
        return OmegaConf.merge(base, other)
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = getattr(err, "full_key", None) or str(err).split("'")[1]
        raise _unknown_key_error(str(key), source) from None
    except ValidationError as err:
        raise ConfigError(f"bad value in {source}: {err.msg}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults ← YAML file ← `key=value` overrides; returns a typed TrainConfig."""
    cfg = OmegaConf.structured(TrainConfig)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        cfg = _merge(cfg, OmegaConf.load(path), str(path))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. optim.lr=1e-3)")
        key = item.split("=", 1)[0]
        if (
            not key.startswith("model.overrides.")
            and OmegaConf.select(cfg, key, default="__missing__") == "__missing__"
        ):
            raise _unknown_key_error(key, "the command line")
        cfg = _merge(cfg, OmegaConf.from_dotlist([item]), "the command line")
    return OmegaConf.to_object(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config (what actually ran) as YAML."""
    Path(path).write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
