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


from pinclip._facade import make_callable  # noqa: E402

make_callable(__name__, "pinclip.train.api:train")  # pinclip.train(...) is the pipeline step
