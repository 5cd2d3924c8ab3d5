"""pinclip.evaluate: retrieval metrics and tasks over a split, baselines, and the report."""

# metrics and retrieval first: pinclip.train (imported by .data) uses them from this package
from .metrics import retrieval_metrics  # isort: skip
from .retrieval import exact_topk, related_pins_hits  # isort: skip
from .data import EvalData  # isort: skip  # noqa: I001
from .tasks import TASKS, EvalResult, TaskResult, evaluate_embedder


def __getattr__(name: str):
    # compare / write_report pull in matplotlib and open_clip: import them on first use
    if name == "compare":
        from .compare import compare

        return compare
    if name == "write_report":
        from .report import write_report

        return write_report
    raise AttributeError(name)


__all__ = [
    "TASKS",
    "EvalData",
    "EvalResult",
    "TaskResult",
    "compare",
    "evaluate_embedder",
    "exact_topk",
    "related_pins_hits",
    "retrieval_metrics",
    "write_report",
]
