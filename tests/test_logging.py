"""Logging: one handler on the "pinclip" logger, never the root logger's level."""

from __future__ import annotations

import io
import logging
import types
from pathlib import Path

from pinclip.log import quiet_root_records, setup_logging

SRC = Path(__file__).resolve().parents[1] / "src" / "pinclip"


def test_plain_lines_when_not_a_terminal_and_the_root_logger_is_untouched():
    root_level, root_handlers = logging.getLogger().level, list(logging.getLogger().handlers)
    stream = io.StringIO()
    logger = setup_logging("INFO", stream=stream)
    setup_logging("INFO", stream=stream)  # again: still one handler
    try:
        logging.getLogger("pinclip.train.checkpoint").warning("skipping %s", "step-00000004")
        logging.getLogger("pinclip.x").debug("not shown at INFO")
        line = stream.getvalue().strip()
        assert line.endswith("WARNING pinclip.train.checkpoint: skipping step-00000004")
        assert "not shown" not in stream.getvalue()
        assert sum(getattr(h, "_pinclip_handler", False) for h in logger.handlers) == 1
        assert logging.getLogger().level == root_level
        assert logging.getLogger().handlers == root_handlers
    finally:
        for handler in [h for h in logger.handlers if getattr(h, "_pinclip_handler", False)]:
            logger.removeHandler(handler)


def test_quiet_root_records_drops_only_that_library_below_the_level(tmp_path, caplog):
    library = types.ModuleType("chatty")
    library.__file__ = str(tmp_path / "chatty" / "__init__.py")
    here = logging.LogRecord("root", logging.INFO, __file__, 1, "ours", None, None)
    theirs = logging.LogRecord(
        "root", logging.INFO, str(tmp_path / "chatty" / "train.py"), 1, "theirs", None, None
    )
    loud = logging.LogRecord(
        "root", logging.ERROR, str(tmp_path / "chatty" / "train.py"), 1, "broken", None, None
    )
    root = logging.getLogger()
    level = root.level
    with quiet_root_records(library, below=logging.WARNING):
        assert root.filter(here) and not root.filter(theirs) and root.filter(loud)
        assert root.level == level
    assert root.filter(theirs)  # the filter is gone after the block


def test_library_code_never_sets_the_root_logger_level_or_prints():
    offenders = [
        f"{p.relative_to(SRC)}:{n}"
        for p in SRC.rglob("*.py")
        if "cli" not in p.relative_to(SRC).parts
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "getLogger().setLevel" in line.replace(" ", "") or line.lstrip().startswith("print(")
    ]
    assert not offenders, offenders
