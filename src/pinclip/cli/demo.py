"""`pinclip demo`: the main job on the shipped default data (what `make demo` runs)."""

from __future__ import annotations


def demo() -> None:
    """Build the emoji catalog if missing, then run the pipeline on it."""
    raise SystemExit("demo arrives with the data package")
