"""Callable packages: `pinclip.train(...)` works even once `pinclip.train` is a module.

`pinclip.train`, `pinclip.evaluate` and `pinclip.serve` are both sub-packages and pipeline
steps. Importing a sub-package makes it the parent's attribute (replacing a lazily
exported function of the same name), so the package itself is made callable instead: it
calls its own step function, named "package.module:function" inside the same package.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(package: str, target: str) -> None:
    module_name, function = target.split(":")
    if not module_name.startswith(package + "."):
        raise ValueError(f"{target} is outside {package}: a package calls only its own step")

    class _StepPackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module_name), function)(*args, **kwargs)

    sys.modules[package].__class__ = _StepPackage
