"""`pinclip models`: list the model presets."""

from __future__ import annotations


def list_models() -> None:
    """List the model presets with their parameter counts."""
    raise SystemExit("model presets arrive with the model package")
