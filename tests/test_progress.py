"""Plain progress lines when the console is not a terminal (CI logs); none on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from pinclip.progress import Heartbeat, Progress


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=200), buf


def test_log_gets_plain_lines_with_counts_and_the_final_line_once():
    console, buf = _console(False)
    with Progress(console=console, every=0.0) as bar:
        task = bar.add_task("train", total=4, info="")
        for step in range(1, 5):
            bar.update(task, completed=step, info=f"loss {1 / step:.3f}")
        bar.update(task, completed=4)  # a repeated final update prints nothing more
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("train 1/4 (25%)") and "left" in lines[0]
    assert "loss 0.250" in lines[-1] and lines[-1].startswith("train 4/4 (100%)")
    assert "left" not in lines[-1]


def test_lines_are_throttled_and_a_terminal_gets_the_bar_not_lines():
    console, buf = _console(False)
    with Progress(console=console, every=3600.0) as bar:
        task = bar.add_task("embed", total=100)
        for _ in range(99):
            bar.advance(task)
    assert len(buf.getvalue().splitlines()) == 1  # the first line; the next is an hour away
    tty, tty_buf = _console(True)
    with Progress(console=tty, every=0.0) as bar:
        assert not bar.plain
        task = bar.add_task("embed", total=2)
        bar.advance(task, 2)
    assert "embed 2/2 (100%)" not in tty_buf.getvalue()


def test_heartbeat_names_the_stage_in_a_log_only():
    console, buf = _console(False)
    with Heartbeat("demo", console, every=3600.0) as beat:
        beat.set("training PinCLIP")
    assert buf.getvalue().startswith("demo: training PinCLIP (0s in this stage")
    tty, tty_buf = _console(True)
    with Heartbeat("demo", tty) as beat:
        beat.set("x")
    assert tty_buf.getvalue() == ""


def test_heartbeat_fills_only_the_gaps_between_progress_lines():
    from pinclip import progress as P

    console, buf = _console(False)
    beat = Heartbeat("demo", console, every=5.0)
    with Progress(console=console, every=3600.0) as bar:
        task = bar.add_task("evaluate PinCLIP", total=3)  # added: no line until it moves
        bar.update(task, completed=1)
        printed = P._last_line[0]
        assert not beat.tick(now=printed + 4.0)  # a progress line 4 s ago: nothing to add
        assert beat.tick(now=printed + 6.0)  # 6 s of silence: the stage line
        bar.update(task, description="evaluate lite0")  # a new phase prints at once
    lines = buf.getvalue().splitlines()
    assert [line.split(" ")[0:2] for line in lines] == [
        ["evaluate", "PinCLIP"],
        ["demo:", "starting"],
        ["evaluate", "lite0"],
    ]
