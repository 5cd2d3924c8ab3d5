"""Validation during training: related-pins Recall@10 of held-out pins against all pins."""

from __future__ import annotations

import numpy as np
import torch

from pinclip.evaluate import exact_topk, related_pins_hits, retrieval_metrics
from pinclip.graph import PinBoardGraph

from .data import TrainingData
from .features import PinInputs


@torch.no_grad()
def embed_pins(
    model, inputs: PinInputs, pins: np.ndarray, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """image_emb, text_emb and pin_emb (image + text fused) of `pins`, in eval mode."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"image_emb": [], "text_emb": [], "pin_emb": []}
    for start in range(0, len(pins), batch_size):
        out = model(**inputs.batch(pins[start : start + batch_size]))
        for key in parts:
            parts[key].append(getattr(out, key).float().cpu())
    model.train(was_training)
    return {key: torch.cat(chunks) for key, chunks in parts.items()}


def related_pins_recall(
    model,
    inputs: PinInputs,
    data: TrainingData,
    queries: np.ndarray,
    k: int = 10,
) -> float:
    """Mean Recall@k of `queries` (their fused pin_emb) against every pin's pin_emb."""
    if len(queries) == 0:
        return 0.0
    emb = embed_pins(model, inputs, np.arange(data.n_pins))
    return recall_from_embeddings(emb, data.graph, queries, k=k)


def recall_from_embeddings(
    emb: dict[str, torch.Tensor],
    graph: PinBoardGraph,
    queries: np.ndarray,
    *,
    k: int = 10,
    query_key: str = "pin_emb",
) -> float:
    """Mean Recall@k of `queries` by their `query_key` embedding among every pin's pin_emb;
    relevant = shares a board in `graph`. Takes embeddings so one pass serves several queries."""
    top = exact_topk(emb[query_key][queries], emb["pin_emb"], k, exclude=queries)
    hits, n_rel = related_pins_hits(graph, queries, top)
    return float(retrieval_metrics(hits, n_rel, ks=(k,))[f"recall@{k}"].mean())
