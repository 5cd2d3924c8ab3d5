"""The results tables in docs/*.md are written from bench/results, never by hand."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _docs_tables():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "bench" / "docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_tables_match_the_results_files():
    stale = _docs_tables().update(check=True)
    assert not stale, f"regenerate with `python bench/docs_tables.py`: {stale}"


def test_a_hand_edited_table_is_caught_and_rewritten(tmp_path):
    tables = _docs_tables()
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    page = docs / "evaluation.md"
    text = page.read_text()
    assert text.count("<!-- table:quality:summary -->") == 1
    edited = text.replace(
        "| emoji | related cold (image+text) | ", "| emoji | related cold (image+text) | 9", 1
    )
    assert edited != text
    page.write_text(edited)
    assert tables.update(check=True, docs=docs) == ["evaluation.md: quality:summary"]
    tables.update(docs=docs)
    assert page.read_text() == text
