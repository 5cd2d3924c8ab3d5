"""Shared benchmark plumbing: interleaved median-of-repeats timing, machine context, results.

Every figure in BENCHMARKS.md is a ratio of two things timed side by side in one run. On a
2-core machine shared with other work, absolute times drift by tens of percent within a
minute; timing the contenders in turn (A, B, A, B, ...) and taking each one's median puts the
same drift on both sides of the ratio.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# PINCLIP_BENCH_RESULTS redirects a trial run away from the committed results
RESULTS = Path(os.environ.get("PINCLIP_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
REPEATS = 5  # the floor: every figure is the median of at least 5 repeats


def machine() -> dict:
    """Context recorded with every result: cores, load average now, library versions."""
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def interleaved(
    contenders: dict[str, Callable[[], object]], repeats: int = REPEATS, warmup: int = 1
) -> dict[str, dict]:
    """Time each contender `repeats` times in turn (A, B, A, B, ...): median and all times (s)."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": float(np.median(ts)), "times_s": [round(t, 6) for t in ts]}
        for name, ts in times.items()
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident memory of this process (MiB), from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats get 3 significant digits."""

    def cell(x) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1e5 else f"{x:,.0f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_result(name: str, result: dict, table: str | None = None) -> Path:
    """bench/results/<name>.json (+ .md table), stamped with the command and machine context."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"command": "python " + " ".join(sys.argv), "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if table is not None:
        header = f"<!-- {result['command']} | load avg {result['machine']['load_avg_1_5_15']} | {result['machine']['when']} -->\n"
        (RESULTS / f"{name}.md").write_text(header + table)
    return path


def loglog_slope(n: list[float], y: list[float]) -> float:
    """Least-squares slope of log y on log n: 1.0 is linear scaling."""
    return float(np.polyfit(np.log(n), np.log(y), 1)[0])
