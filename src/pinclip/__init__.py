"""pinclip: graph-aware multimodal embeddings (PinCLIP recipe), trained, evaluated and served.

    from pinclip import PinCLIP, read_catalog, load_config, train

The public names are re-exported lazily, so `import pinclip` (and the CLI's start-up)
does not pay for torch until a model is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Catalog": "pinclip.data.catalog",
    "read_catalog": "pinclip.data.catalog",
    "write_catalog": "pinclip.data.catalog",
    "check_catalog": "pinclip.data.catalog",
    "build_emoji_catalog": "pinclip.data.builders",
    "build_synthetic_catalog": "pinclip.data.builders",
    "PinBoardGraph": "pinclip.graph",
    "split_pins": "pinclip.graph",
    "PinCLIP": "pinclip.model",
    "PinCLIPConfig": "pinclip.model",
    "create_model": "pinclip.model",
    "list_presets": "pinclip.model",
    "LossConfig": "pinclip.losses",
    "pinclip_loss": "pinclip.losses",
    "TrainConfig": "pinclip.train",
    "load_config": "pinclip.train",
    "train": "pinclip.train",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pinclip' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
