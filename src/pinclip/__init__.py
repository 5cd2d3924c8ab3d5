"""pinclip: graph-aware multimodal embeddings (PinCLIP recipe), trained, evaluated and served.

    import pinclip
    pinclip.build_catalog("emoji", "data/emoji")
    run = pinclip.train("configs/emoji-small.yaml")            # pinclip train -c ...
    report, _ = pinclip.compare([str(run.run_dir), "minilm+lite0"], split_from=run.run_dir)
    pinclip.embed_catalog(run.run_dir / "best", "data/emoji", "runs/emb")
    index, info = pinclip.build_index("runs/emb", "runs/index", catalog_dir="data/emoji")
    pinclip.serve("runs/index", run.run_dir / "best")
    model = pinclip.PinCLIP.from_pretrained("runs/emoji-small/best")  # or "org/name" (Hub)
    model.encode_image([pil_image]), model.encode_text(["a red fox"])

One function per CLI step, same names and defaults (`pinclip.<layer>.api`). The public names
are re-exported lazily, so `import pinclip` (and the CLI's start-up) does not pay for torch
until a model is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # the pipeline, one function per CLI step (each layer's api module)
    "build_catalog": "pinclip.data.api",
    "check_catalog": "pinclip.data.catalog",
    "train": "pinclip.train.api",
    "evaluate": "pinclip.evaluate.api",
    "compare": "pinclip.evaluate.api",
    "embed_catalog": "pinclip.serve.api",
    "export": "pinclip.serve.api",
    "build_index": "pinclip.serve.api",
    "serve": "pinclip.serve.api",
    # data, graph, model, objectives, configs
    "Catalog": "pinclip.data.catalog",
    "read_catalog": "pinclip.data.catalog",
    "write_catalog": "pinclip.data.catalog",
    "build_emoji_catalog": "pinclip.data.builders",
    "build_synthetic_catalog": "pinclip.data.builders",
    "PinBoardGraph": "pinclip.graph",
    "split_pins": "pinclip.graph",
    "PinCLIP": "pinclip.model",
    "PinCLIPConfig": "pinclip.model",
    "create_model": "pinclip.model",
    "list_presets": "pinclip.model",
    "LossConfig": "pinclip.losses",
    "LossInputs": "pinclip.losses",
    "pinclip_loss": "pinclip.losses",
    "TrainConfig": "pinclip.train",
    "load_config": "pinclip.train",
    "PinclipError": "pinclip.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pinclip' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
