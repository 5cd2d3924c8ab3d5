"""Write the docs' results tables from the results files, between markers; never by hand.

    python bench/docs_tables.py            # rewrite every marked table in docs/*.md
    python bench/docs_tables.py --check    # exit 1 if a marked table differs (tests run this)

A table in a docs page is the block between `<!-- table:NAME -->` and `<!-- /table -->`;
NAME says what it shows, from bench/results/quality.json (written by `make quality`) and,
for `foundation`, bench/results/foundation.json (written by bench/foundation.py):

- `quality:summary`: PinCLIP vs the best training-free baseline, λ = 0 and open_clip, per
  catalog and headline task, read by the report's CI rule (`ci_reading`);
- `quality:CATALOG:vs_every_model`: PinCLIP ÷ every model, paired bootstrap CIs;
- `quality:CATALOG:per_task:RELEVANCE`: every model × every task, Recall@10 [95% CI], and
  the tasks that are n/a for a model, with the reason;
- `foundation`: the foundation transfer (mdi foundation -> emoji), cold Recall@10 [95% CI]
  and seconds per training step of each row.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- table:(?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
TASK_LABELS = {
    "related_cold": "related cold (image+text)",
    "related_cold_image": "related cold, image only",
}


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(v: dict | None) -> str:
    """'mean [low, high]' of a Recall@10 entry, or — when the model has no such path."""
    return "—" if v is None else f"{v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"


def _missing(what: str) -> str:
    return f"*{what} is not in bench/results/quality.json yet: run `make quality`.*\n"


def render(quality: dict) -> dict[str, str]:
    """Every table NAME -> its markdown, from the parsed quality.json."""
    from pinclip.evaluate.report import ci_reading

    catalogs = [k for k in quality if not k.startswith("_") and isinstance(quality[k], dict)]
    catalogs = [c for c in catalogs if "related_cold" in quality[c]]
    rows = []
    for cat in catalogs:
        for task, label in TASK_LABELS.items():
            r = quality[cat].get(task)
            if r is None:
                continue
            lo, hi = r["ci"]
            others = r["all"]
            rows.append(
                [
                    cat,
                    label,
                    f"{r['ours']:.3f}",
                    f"{r['best_baseline_name']} {r['best_baseline']:.3f}",
                    f"{r['ratio']:.2f}× [{lo:.2f}, {hi:.2f}]",
                    f"{others['λ=0']:.3f}" if "λ=0" in others else "—",
                    f"{others['open_clip']:.3f}" if "open_clip" in others else "—",
                    ci_reading(lo, hi, "it"),
                ]
            )
    header = ["catalog", "task", "PinCLIP", "best training-free baseline", "PinCLIP ÷ it [95% CI]"]
    header += ["λ = 0", "open_clip (lr 5e-4)", "reading"]
    tables = {"quality:summary": _table(header, rows) if rows else _missing("The summary")}
    for cat in catalogs:
        extra = quality[cat].get("tables")
        name = f"quality:{cat}"
        if extra is None:
            tables[f"{name}:vs_every_model"] = _missing(f"The {cat} comparison with every model")
            for rel in ("curated", "all"):
                tables[f"{name}:per_task:{rel}"] = _missing(f"The {cat} per-task table")
            continue
        tables[f"{name}:vs_every_model"] = _table(
            ["task", "vs", "PinCLIP recall@10", "their recall@10", "ratio [95% CI]"],
            [
                [h["task"], h["vs"], f"{h['ours']:.3f}", f"{h['theirs']:.3f}",
                 f"{h['ratio']:.2f}× [{h['ci'][0]:.2f}, {h['ci'][1]:.2f}]"]
                for h in extra["vs_every_model"]
            ],
        )  # fmt: skip
        na = [
            f"- {model}: {task.replace('_', ' ')} n/a, {why}"
            for model, skipped in extra["not_applicable"].items()
            for task, why in skipped.items()
        ]
        for rel, table in extra["per_task"].items():
            labels = list(next(iter(table.values())))
            body = _table(["model", *labels], [[m, *cells.values()] for m, cells in table.items()])
            tables[f"{name}:per_task:{rel}"] = body + ("\n" + "\n".join(na) + "\n" if na else "")
    return tables


def render_foundation(foundation: dict | None) -> str:
    """The foundation-transfer table from the parsed foundation.json."""
    if foundation is None:
        return "*bench/results/foundation.json does not exist yet: run bench/foundation.py.*\n"
    return _table(
        ["run", "cold related-pins Recall@10 [95% CI]", "seconds per step"],
        [
            [r["name"], _cell({"mean": r["related_cold"], "ci95": r["ci"]}),
             "—" if r["seconds"] is None else f"{r['seconds']:.2f}"]
            for r in foundation["rows"]
        ],
    )  # fmt: skip


def update(check: bool = False, docs: Path = DOCS, results: Path = RESULTS) -> list[str]:
    """Rewrite (or with `check`, compare) every marked table; returns the stale ones."""
    tables = render(json.loads((results / "quality.json").read_text()))
    foundation = results / "foundation.json"
    tables["foundation"] = render_foundation(
        json.loads(foundation.read_text()) if foundation.is_file() else None
    )
    stale = []
    for page in sorted(docs.glob("*.md")):
        text = page.read_text()

        def fill(m: re.Match, page=page) -> str:
            name = m["name"]
            if name not in tables:
                raise SystemExit(f"{page.name}: no results for table {name!r}")
            if m["body"] != tables[name]:
                stale.append(f"{page.name}: {name}")
            return m.group(1) + tables[name] + m.group(4)

        new = BLOCK.sub(fill, text)
        if new != text and not check:
            page.write_text(new)
    return stale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only report tables that differ")
    args = ap.parse_args()
    stale = update(check=args.check)
    for name in stale:
        print(("stale: " if args.check else "rewrote: ") + name)
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
