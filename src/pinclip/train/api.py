"""The training step of the Python API: `pinclip.train(config, *overrides, resume=False)`."""

from __future__ import annotations

from typing import Any

from pinclip.errors import PinclipError


def train(config: Any = None, *overrides: str, resume: bool = False, console: Any = None):
    """Train (or resume) a run, like `pinclip train -c CONFIG key=value ...`.

    `config` is a TrainConfig, a YAML path or None (the defaults); `overrides` are the CLI's
    `key=value` strings. Returns the RunResult (run_dir, steps, best_val_recall, ...).
    """
    from pinclip.train.config import TrainConfig, load_config
    from pinclip.train.recipe import train as run_training

    if isinstance(config, TrainConfig):
        if overrides:
            raise PinclipError(
                "key=value overrides go with a YAML path or None; change a TrainConfig with "
                "dataclasses.replace instead"
            )
        cfg = config
    else:
        cfg = load_config(config, list(overrides))
    return run_training(cfg, resume=resume, console=console)
