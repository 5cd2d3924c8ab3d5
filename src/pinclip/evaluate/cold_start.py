"""Cold-start related-pins quality of a finished run, on the run's own split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from pinclip.model import PinCLIP
from pinclip.retrieval import embed_pins, related_pins_recall
from pinclip.train.config import load_config
from pinclip.train.data import load_training_data
from pinclip.train.features import PinInputs


def evaluate_cold_start(
    run_dir: str | Path, *, checkpoint: str = "best", console: Console | None = None
) -> dict[str, float]:
    """Recall@10 of the run's cold pins: fused (image + text) and image-only queries.

    Candidates are all pins (their fused `pin_emb`); relevant = shares a board in the full
    graph. The split is rebuilt from the run's resolved config, so it is the one it trained on.
    """
    console = console or Console(stderr=True)
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    data = load_training_data(cfg.data, run_dir=run_dir, console=Console(quiet=True))
    model = PinCLIP.from_pretrained(run_dir / checkpoint)
    inputs = PinInputs.prepare(
        model,
        data,
        cache_dir=Path(cfg.data.cache_dir),
        device=model.logit_scale.device,
        console=console,
    )
    emb = embed_pins(model, inputs, np.arange(data.n_pins))
    cold, pin = data.split.cold, emb["pin_emb"]
    return {
        "cold_recall@10": related_pins_recall(pin[cold], pin, data.graph, cold),
        "cold_image_only_recall@10": related_pins_recall(
            emb["image_emb"][cold], pin, data.graph, cold
        ),
        "cold_pins": float(len(cold)),
    }
