"""Typed training configuration: dataclasses, YAML files in `configs/`, `key=value` overrides.

One dataclass per concept, each stated once where it belongs: the loss section is
`pinclip.losses.LossConfig`, the random-walk sampler's parameters are
`pinclip.graph.RandomWalkConfig`, the split's part of `data:` (what evaluation rebuilds) is
`pinclip.graph.CatalogSplitConfig`, and `model.overrides` are checked against the model's
`PinCLIPConfig` when the config is made. Every layer goes through the same typed merge
(`pinclip._typed_config`), which rejects unknown keys with the nearest valid one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf

from pinclip._typed_config import check_choices, choice_error, merge, to_object, unknown_key_error
from pinclip.atomic import atomic_write_text
from pinclip.errors import ConfigError
from pinclip.graph import CatalogSplitConfig, RandomWalkConfig
from pinclip.losses import LossConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "load_config",
    "save_config",
]


@dataclass
class DataConfig(CatalogSplitConfig):
    """Training's `data:` section: the split's part (`pinclip.graph.CatalogSplitConfig`,
    catalog, held-out fractions, feature store, which evaluation rebuilds too) and how
    batches are drawn from it."""

    sampler: Literal["coboard", "random_walk"] = "coboard"  # neighbor sampler of the pairs
    random_walk: RandomWalkConfig = field(default_factory=RandomWalkConfig)  # sampler=random_walk
    feature_workers: int = 1  # processes computing the feature store (per rank)
    # "pairs": each warm anchor + one sampled board neighbor (a second row per anchor);
    # "boards": P boards × board_k of their warm pins, the positives already in the batch
    batch: Literal["pairs", "boards"] = "pairs"
    board_k: int = 4  # batch=boards: warm pins drawn per board
    # batch=pairs: each seed anchor brings this many hard negatives (pins its random walks
    # reach that share no board with it), so a batch holds batch_size // (1 + H) seeds;
    # 0: anchors are a plain random permutation
    hard_negatives: int = 0
    curated_weight: float = 1.0  # batch=boards: draw weight of a curated board vs a user board
    board_size_power: float = 0.5  # batch=boards: a board is drawn ∝ (its warm pins)^power
    loader_workers: int = (
        -1
    )  # DataLoader processes; -1: <= 4 on a GPU with trainable towers, else 0
    prefetch: int = 2  # micro-batches each loader worker makes ahead

    def __post_init__(self) -> None:
        super().__post_init__()  # the split's checks and every Literal field of `data`
        if self.hard_negatives < 0 or (self.hard_negatives and self.batch != "pairs"):
            raise ConfigError(
                f"data.hard_negatives={self.hard_negatives}: use a count >= 0, with data.batch=pairs"
            )
        if self.batch == "boards" and self.board_k < 2:
            raise ConfigError(
                f"data.board_k={self.board_k}: a board needs at least 2 pins in the batch"
            )
        _at_least(self, "data", curated_weight=0, feature_workers=1, loader_workers=-1, prefetch=1)


@dataclass
class ModelConfig:
    preset: str = "small"  # model preset: tiny, small, base (`pinclip models`)
    overrides: dict[str, Any] = field(default_factory=dict)  # PinCLIPConfig keys, e.g. image.depth

    def __post_init__(self) -> None:
        """The preset exists and the overrides go through the model's own typed path (unknown
        key, wrong type, its `__post_init__`), here rather than at model build."""
        from pinclip.model import list_presets, preset_config

        if self.preset not in list_presets():
            raise choice_error("model.preset", self.preset, tuple(list_presets()))
        try:
            preset_config(self.preset, **dict(self.overrides))
        except ConfigError as err:
            raise ConfigError(f"model.overrides (preset {self.preset!r}): {err}") from None


@dataclass
class OptimConfig:
    lr: float = 5e-4  # peak learning rate of the trained layers (AdamW)
    #: lr of the pretrained towers' tuned top blocks (model.overrides.text.tune_last_layers,
    #: image.tune_last_blocks); the schedule scales it like `lr`.
    tuned_lr: float = 1e-4
    weight_decay: float = 0.05  # AdamW weight decay (not on gains, biases, norms)
    warmup_steps: int = 50  # linear warmup steps before the cosine decay
    min_lr_ratio: float = 0.05  # cosine decay floor, as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm (clip_grad_norm_)
    accum_steps: int = 1  # micro-batches accumulated per optimizer step

    def __post_init__(self) -> None:
        _at_least(self, "optim", lr=0, tuned_lr=0, weight_decay=0, warmup_steps=0, accum_steps=1)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.grad_clip <= 0:
            raise ConfigError(f"optim.grad_clip={self.grad_clip} must be > 0 (a max gradient norm)")


@dataclass
class TrainConfig:
    run_dir: str = "runs/emoji-small"  # where checkpoints, best/, metrics.jsonl go
    seed: int = 0  # seed of model init, batches and augmentations
    epochs: int = 10  # passes over the warm pins (unless max_steps)
    max_steps: int = 0  # 0: epochs decide
    batch_size: int = 128  # batch of one micro-batch, summed over ranks
    val_every: int = 0  # steps; 0: once per epoch
    ckpt_every: int = 0  # steps; 0: once per epoch
    keep_last: int = 2  # checkpoints kept (best/ is kept apart)
    device: str = "auto"  # auto (CUDA if visible, else CPU), cpu, cuda, cuda:N, mps
    # auto (bf16 on CUDA, else fp32), fp32, bf16, fp16 (+ grad scaler)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: int = 0  # torch intra-op threads; 0: leave torch's default
    # under torchrun: "ddp" (a model replica per rank) or "fsdp" (FSDP2 shards: a model that
    # does not fit one GPU, e.g. a large VLM backbone); see pinclip.train.parallel
    distributed: Literal["ddp", "fsdp"] = "ddp"
    tensorboard: bool = True  # RUN/tensorboard/ (the 'tensorboard' extra; warns if missing)
    mlflow: str | None = None  # an MLflow tracking URI: log params and metrics there
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        check_choices(self, "")
        _check_device(self.device)
        _at_least(
            self,
            "",
            epochs=0,
            max_steps=0,
            batch_size=1,
            val_every=0,
            ckpt_every=0,
            keep_last=0,
            threads=0,
        )


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_device(device: str) -> None:
    """The device's spelling (whether it is there is `resolve_device`'s check, at run time)."""
    if not DEVICE.fullmatch(device):
        raise choice_error("device", device, ("auto", "cpu", "cuda", "cuda:N", "mps"))


def _at_least(cfg: Any, section: str, **minimum: float) -> None:
    """Each named field of `cfg` is >= its minimum, else a ConfigError naming the key."""
    for name, low in minimum.items():
        value = getattr(cfg, name)
        if value < low:
            key = f"{section}.{name}" if section else name
            raise ConfigError(f"{key}={value} must be >= {low}")


FREE_KEYS = ("model.overrides",)  # checked against the model's config, not TrainConfig's
RENAMED = {  # keys of older run configs -> their one name today (files are migrated on load)
    "data.walk_top_k": "data.random_walk.top_k",
    "data.walk_count": "data.random_walk.n_walks",
    "data.walk_length": "data.random_walk.walk_length",
    "data.walk_restart": "data.random_walk.restart_prob",
}


def _migrate(file_cfg: Any) -> Any:
    """An older run's config.yaml, with renamed keys moved to their current name."""
    for old, new in RENAMED.items():
        value = OmegaConf.select(file_cfg, old, default="__missing__")
        if value != "__missing__":
            section, leaf = old.rsplit(".", 1)
            del OmegaConf.select(file_cfg, section)[leaf]
            OmegaConf.update(file_cfg, new, value, force_add=True)
    return file_cfg


def _merge(base: Any, other: Any, source: str) -> Any:
    try:
        return merge(base, other, source, free=FREE_KEYS)
    except ConfigError as err:
        for old, new in RENAMED.items():
            if f"'{old}'" in str(err):
                raise ConfigError(f"config key '{old}' in {source} is now '{new}'") from None
        raise


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults ← YAML file ← `key=value` overrides; returns a typed TrainConfig, every
    section checked (`Literal` choices with the nearest one, ranges, the model's overrides)
    before anything is read or built."""
    cfg = OmegaConf.structured(TrainConfig)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        cfg = _merge(cfg, _migrate(OmegaConf.load(path)), str(path))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. optim.lr=1e-3)")
        key = item.split("=", 1)[0]
        free = any(key.startswith(k + ".") for k in FREE_KEYS)
        if not free and OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            if key in RENAMED:
                raise ConfigError(f"config key '{key}' is now '{RENAMED[key]}'")
            raise unknown_key_error(key, TrainConfig, "the command line", free=FREE_KEYS)
        cfg = _merge(cfg, OmegaConf.from_dotlist([item]), "the command line")
    return to_object(cfg, str(path) if path is not None else "the config")


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config (what actually ran) as YAML."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
