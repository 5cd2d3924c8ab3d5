"""Dependencies point down the data flow: each package imports only the layers below it.

The order (docs/architecture.md): foundations → data (catalog) → graph → model → losses →
retrieval → train → evaluate → serve → cli. Every `import` in the source counts, including
ones inside functions, so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pinclip

SRC = Path(pinclip.__file__).parent
LAYERS = [
    {
        "errors",
        "atomic",
        "_typed_config",
        "distributed",
        "progress",
        "log",
        "_facade",
        "memory",
        "registry",
    },
    {"data"},
    {"graph"},
    {"model"},
    {"losses"},
    {"retrieval"},
    {"train"},
    {"evaluate"},
    {"serve"},
    {"cli", "__main__", "__init__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pinclip" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """The pinclip sub-packages `path` imports (absolute or relative)."""
    here = path.relative_to(SRC).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
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


def _layer_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def test_every_module_has_a_layer():
    names = {_layer_of(p) for p in SRC.rglob("*.py")}
    assert names <= set(LAYER), f"put {sorted(names - set(LAYER))} in a layer of LAYERS"


def test_imports_point_down_the_data_flow():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        own = _layer_of(path)
        for imported in _imports(path):
            if imported in LAYER and LAYER[imported] > LAYER[own]:
                upward.append(f"{path.relative_to(SRC)} imports pinclip.{imported}")
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_training_never_imports_evaluation():
    """The old cycle: train → evaluate → train. Retrieval primitives live below both."""
    for path in (SRC / "train").rglob("*.py"):
        assert "evaluate" not in _imports(path), path
