"""SVG → PNG on white with resvg-py, in parallel processes, with a progress bar (builders only)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import resvg_py

# (svg source, output PNG path, side in pixels); the source is a file path, or SVG markup
# when it starts with "<"
RenderJob = tuple[str, str, int]


def _render(job: RenderJob) -> str:
    svg, out, size = job
    source = {"svg_string": svg} if svg.lstrip().startswith("<") else {"svg_path": svg}
    png = resvg_py.svg_to_bytes(
        **source, width=size, height=size, background="white", skip_system_fonts=True
    )
    Path(out).write_bytes(bytes(png))
    return out


def render_svgs(
    jobs: list[RenderJob], *, workers: int, progress: bool, label: str = "rendering"
) -> None:
    """Render every job; same jobs give byte-identical PNGs whatever `workers` is."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task(label, total=len(jobs))
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for _ in pool.map(_render, jobs, chunksize=32):
                    bar.advance(task)
        else:
            for job in jobs:
                _render(job)
                bar.advance(task)
