"""pinclip.evaluate: retrieval metrics and tasks over a split, baselines, and the report."""

from pinclip.retrieval import exact_topk, related_pins_hits, retrieval_metrics

from .data import EvalData
from .tasks import EVAL_TASKS, TASKS, EvalResult, TaskResult, evaluate_embedder, register_task


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
    "EVAL_TASKS",
    "TASKS",
    "EvalData",
    "EvalResult",
    "TaskResult",
    "compare",
    "evaluate_embedder",
    "register_task",
    "exact_topk",
    "related_pins_hits",
    "retrieval_metrics",
    "write_report",
]


from pinclip._facade import make_callable  # noqa: E402

make_callable(
    __name__, "pinclip.evaluate.api:evaluate"
)  # pinclip.evaluate(...) is the pipeline step
