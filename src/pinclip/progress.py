"""One progress display for long jobs: a Rich bar on a terminal, plain lines in a log.

Rich draws nothing until the end when its console is not a terminal (a CI log, `make demo >
log`), so a long job looks hung. `Progress` here is Rich's, plus: when the console is not a
terminal it prints one plain line per task every `every` seconds (and when a task finishes
or its description changes), e.g. `train 120/300 (40%) 35s elapsed, ~52s left  loss 1.234`.
`Heartbeat` fills the gaps: a `label: stage` line whenever no plain line was printed for
`every` seconds (a stage with no progress of its own, or a task between two advances).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import Progress as _RichProgress
from rich.progress import TaskID

__all__ = ["PLAIN_EVERY_S", "Heartbeat", "Progress"]

PLAIN_EVERY_S = 5.0  # seconds between plain lines of one task
_last_line = [float("-inf")]  # when any plain line was last printed (time.monotonic())


def _print_plain(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    _last_line[0] = time.monotonic()


class Progress(_RichProgress):
    """`rich.progress.Progress` that also logs plain lines when stderr/stdout is no terminal."""

    def __init__(
        self, *columns: Any, console: Console | None = None, every: float = PLAIN_EVERY_S, **kw: Any
    ) -> None:
        console = console or Console(stderr=True)
        disabled = kw.pop("disable", False)
        self.plain = not disabled and not console.is_terminal and not console.quiet
        super().__init__(*columns, console=console, disable=disabled or self.plain, **kw)
        self.every = every
        self._last: dict[TaskID, float] = {}

    def update(self, task_id: TaskID, **kw: Any) -> None:
        renamed = "description" in kw and kw["description"] != self._tasks[task_id].description
        super().update(task_id, **kw)
        if renamed:  # a new phase of the task: say so now, not at the next throttled line
            self._last.pop(task_id, None)
        self._line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._line(task_id)

    def _line(self, task_id: TaskID) -> None:
        if not self.plain:
            return
        task = self._tasks[task_id]
        now = time.monotonic()
        done = task.total is not None and task.completed >= task.total
        if not done and now - self._last.get(task_id, -1e9) < self.every:
            return
        if done and self._last.get(task_id) == float("inf"):
            return  # the final line is printed once
        self._last[task_id] = float("inf") if done else now
        elapsed = task.elapsed or 0.0
        parts = [str(task.description or "progress")]
        if task.total:
            parts.append(
                f"{task.completed:g}/{task.total:g} ({100 * task.completed / task.total:.0f}%)"
            )
        else:
            parts.append(f"{task.completed:g}")
        timing = f"{elapsed:.0f}s elapsed"
        if task.total and task.completed and not done:
            timing += f", ~{elapsed * (task.total - task.completed) / task.completed:.0f}s left"
        parts.append(timing)
        info = task.fields.get("info")
        if info:
            parts.append(f" {info}")
        _print_plain(self.console, " ".join(parts))


class Heartbeat:
    """A plain `label: stage, Ns` line from a thread (logs only) whenever no plain line was
    printed for `every` seconds, and one at each new stage.

    For stages whose own code shows no progress: the log still says where the job is, and
    while a `Progress` prints its own lines the heartbeat adds nothing.
    """

    def __init__(self, label: str, console: Console, every: float = PLAIN_EVERY_S) -> None:
        import threading

        self.label, self.console, self.every = label, console, every
        self.stage, self.started = "starting", time.monotonic()
        self._stage_started = self.started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.enabled = not console.is_terminal and not console.quiet

    def set(self, stage: str) -> None:
        self.stage, self._stage_started = stage, time.monotonic()
        if self.enabled:
            self._print()

    def _print(self) -> None:
        now = time.monotonic()
        _print_plain(
            self.console,
            f"{self.label}: {self.stage} ({now - self._stage_started:.0f}s in this stage, "
            f"{now - self.started:.0f}s in all)",
        )

    def tick(self, now: float | None = None) -> bool:
        """Print a line if the log has been silent for `every` seconds; True if it did."""
        now = time.monotonic() if now is None else now
        if now - _last_line[0] < self.every:
            return False
        self._print()
        return True

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.every)):
            self.tick()

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
