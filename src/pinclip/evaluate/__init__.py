"""pinclip.evaluate: retrieval metrics and tasks over a split."""

from .metrics import retrieval_metrics
from .retrieval import exact_topk, related_pins_hits

__all__ = ["exact_topk", "related_pins_hits", "retrieval_metrics"]
