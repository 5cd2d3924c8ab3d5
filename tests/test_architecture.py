"""Dependencies point down the data flow, along a graph of allowed imports.

`ALLOWED` (docs/architecture.md, "What may import what") names, for each package, the
packages it may import: foundations → data (catalog) → graph → model → losses / retrieval →
train → evaluate / serve → cli, with the edges a layer order cannot state: evaluation and
serving never import training, serving never imports the losses or evaluation. Every
`import` in the source counts, including ones inside functions, so a lazy import cannot hide
an upward dependency.
"""

from __future__ import annotations

import ast
from graphlib import TopologicalSorter
from pathlib import Path

import pinclip

SRC = Path(pinclip.__file__).parent
FOUNDATIONS = {
    "errors",
    "atomic",
    "_typed_config",
    "distributed",
    "progress",
    "log",
    "_facade",
    "memory",
    "registry",
}
TOP = {"cli", "__main__", "__init__"}  # the command line and the lazy top-level re-exports
BELOW_TRAIN = {"foundations", "data", "graph", "model", "retrieval"}
ALLOWED: dict[str, set[str]] = {  # node -> the nodes it may import (its own always)
    "foundations": set(),
    "data": {"foundations"},
    "graph": {"foundations", "data"},
    "model": {"foundations", "data", "graph"},
    "losses": {"foundations"},
    "retrieval": {"foundations", "graph"},
    "train": BELOW_TRAIN | {"losses"},
    "evaluate": set(BELOW_TRAIN),  # rebuilds a run's split with pinclip.graph.load_split
    "serve": set(BELOW_TRAIN),
    "cli": {"foundations", "data", "graph", "model", "losses", "retrieval"}
    | {"train", "evaluate", "serve"},
}


def node_of(name: str) -> str | None:
    """The graph node of a top-level pinclip module or package (None: not a module)."""
    if name in FOUNDATIONS:
        return "foundations"
    if name in TOP:
        return "cli"
    return name if name in ALLOWED else None


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pinclip" and len(parts) > 1 else None


def imports_of(source: str, here: tuple[str, ...]) -> set[str]:
    """The top-level pinclip modules `source` imports (absolute or relative, lazy ones
    included); `here` is its module path under `pinclip`, e.g. ("serve", "app")."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {_top(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = list(here[:-1])  # a module's package; `pkg/__init__` is pkg's own
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # `from . import x` at the top level: x is the sub-package
                    found |= {alias.name for alias in node.names}
                else:
                    found.add(target[0])
            else:
                found.add(_top(node.module or ""))
    return {f for f in found if f}


def import_map(src: Path = SRC) -> dict[str, set[str]]:
    """{module path relative to `src`: the top-level pinclip modules it imports}."""
    return {
        str(path.relative_to(src)): imports_of(
            path.read_text(), path.relative_to(src).with_suffix("").parts
        )
        for path in sorted(src.rglob("*.py"))
    }


def violations(imports: dict[str, set[str]]) -> list[str]:
    """'PATH imports pinclip.X' for every import `ALLOWED` does not allow."""
    out = []
    for path, names in sorted(imports.items()):
        own = node_of(path.split("/")[0].removesuffix(".py"))
        for name in sorted(names):
            target = node_of(name)
            if target is not None and target != own and target not in ALLOWED[own]:
                out.append(f"{path} imports pinclip.{name} ({own} may not import {target})")
    return out


def _layer_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def test_every_module_has_a_node():
    names = {_layer_of(p) for p in SRC.rglob("*.py")}
    unplaced = sorted(n for n in names if node_of(n) is None)
    assert not unplaced, f"put {unplaced} in a node of ALLOWED (or in FOUNDATIONS)"


def test_the_allowed_graph_is_acyclic_and_keeps_the_stated_rules():
    order = list(TopologicalSorter(ALLOWED).static_order())  # raises CycleError on a cycle
    assert order[0] == "foundations" and order[-1] == "cli"
    assert "train" not in ALLOWED["evaluate"] | ALLOWED["serve"]
    assert not {"losses", "evaluate"} & ALLOWED["serve"]
    assert "evaluate" not in ALLOWED["train"]  # the old cycle: train → evaluate → train


def test_imports_follow_the_allowed_graph():
    found = violations(import_map())
    assert not found, "imports the graph does not allow:\n" + "\n".join(found)


def test_a_violation_is_caught():
    """The checker itself: a synthetic import map with forbidden edges, and a lazy relative
    import parsed from source, are both reported."""
    lazy = "def handler():\n    from ..train.config import load_config\n"
    imports = {
        "serve/app.py": imports_of(lazy, ("serve", "app")),
        "serve/index.py": {"losses", "errors", "model"},
        "evaluate/data.py": {"train", "graph"},
        "serve/service.py": {"evaluate"},
        "data/catalog.py": {"graph"},
        "train/recipe.py": {"losses", "model"},  # allowed
    }
    assert imports["serve/app.py"] == {"train"}
    assert [v.split(" (")[0] for v in violations(imports)] == [
        "data/catalog.py imports pinclip.graph",
        "evaluate/data.py imports pinclip.train",
        "serve/app.py imports pinclip.train",
        "serve/index.py imports pinclip.losses",
        "serve/service.py imports pinclip.evaluate",
    ]
