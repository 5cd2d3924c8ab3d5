"""pinclip.train: typed configs, the training recipe, checkpoints."""

from .config import ConfigError, TrainConfig, load_config, save_config
from .recipe import RunResult, TrainingError, train

__all__ = [
    "ConfigError",
    "RunResult",
    "TrainConfig",
    "TrainingError",
    "load_config",
    "save_config",
    "train",
]
