"""Logging: the standard `logging` module throughout, set up once by the command line.

Library code logs to `logging.getLogger(__name__)` (loggers under "pinclip") and never
configures handlers or touches the root logger, so an application embedding pinclip keeps
control. `setup_logging` (called by the `pinclip` command) gives the "pinclip" logger a
Rich handler on a terminal and a plain timestamped line handler otherwise (CI logs, files).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = "pinclip"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_FLAG = "_pinclip_handler"


def setup_logging(level: int | str | None = None, *, stream=None) -> logging.Logger:
    """Give the "pinclip" logger one handler (Rich on a terminal, plain lines otherwise).

    `level` defaults to $PINCLIP_LOG_LEVEL or INFO. Calling it again replaces the handler.
    """
    level = level or os.environ.get("PINCLIP_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            from pinclip.errors import PinclipError

            raise PinclipError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    target = stream or _Stderr()  # sys.stderr at write time (test runners swap it)
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)]:
        logger.removeHandler(handler)
    if target.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console(file=stream) if stream is not None else Console(stderr=True)
        handler: logging.Handler = RichHandler(
            console=console, show_path=False, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(target)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    setattr(handler, _HANDLER_FLAG, True)
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger


class _Stderr:
    """Whatever sys.stderr is when a record is written."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return getattr(sys.stderr, "isatty", lambda: False)()


class _BelowFrom(logging.Filter):
    """Drops records below `level` logged from files under `folder`."""

    def __init__(self, folder: Path, level: int) -> None:
        super().__init__()
        self.folder, self.level = str(folder), level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or not record.pathname.startswith(self.folder)


@contextlib.contextmanager
def quiet_root_records(module: object, below: int = logging.WARNING) -> Iterator[None]:
    """Silence a library that logs straight to the root logger (`logging.info(...)`), only
    for its own records and only inside the block; the root logger's level is untouched."""
    folder = Path(getattr(module, "__file__", "") or "").parent
    filt = _BelowFrom(folder, below)
    root = logging.getLogger()
    root.addFilter(filt)
    try:
        yield
    finally:
        root.removeFilter(filt)
