"""The catalog-builder registry: each builder is one module that registers itself here.

A builder registers its function with an options dataclass (`register_builder`); the three
places that build catalogs read that one table:

- `pinclip catalog build NAME OUT ...`: one command per entry, its flags generated from the
  options' fields (`option(default, help, cli=...)`), its help from the entry's help;
- `pinclip.build_catalog(NAME, out, **options)`: options checked against the dataclass;
- `data.build_if_missing: NAME` in a training config: the builder with its default options.

Every builder takes `out` and the keywords `progress` and `overwrite` besides its options
(`COMMON`), and returns the catalog's directory.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from pinclip.errors import ConfigError
from pinclip.registry import Registry

#: keywords every builder takes besides its options (not part of the options dataclass)
COMMON = ("progress", "overwrite")

F = TypeVar("F", bound=Callable[..., Path])


def option(default: Any, help: str, *, cli: str | None = None) -> Any:
    """An options field: its default, its CLI help and (when not `--field-name`) its flag."""
    meta = {"help": help} | ({"cli": cli} if cli else {})
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CatalogBuilder:
    """A registered builder: `build(out, **options, progress=, overwrite=) -> Path`."""

    build: Callable[..., Path]
    options: type  # a dataclass whose fields are the builder's keywords (defaults, help)

    def make_options(self, name: str, **values: Any) -> Any:
        """The options dataclass from keywords; an unknown one is a ConfigError naming it."""
        known = [f.name for f in fields(self.options)]
        for key in values:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ConfigError(
                    f"catalog builder {name!r} has no option {key!r}{did_you_mean} "
                    f"(options: {', '.join(known)})"
                )
        return self.options(**values)

    def run(
        self,
        out: str | Path,
        options: Any = None,
        *,
        progress: bool = True,
        overwrite: bool = False,
    ) -> Path:
        """Build into `out` with `options` (default: the dataclass's defaults)."""
        options = self.options() if options is None else options
        return Path(self.build(out, **asdict(options), progress=progress, overwrite=overwrite))


BUILDERS: Registry[CatalogBuilder] = Registry("catalog builder")


def register_builder(name: str, options: type, *, help: str) -> Callable[[F], F]:
    """Decorator: make `build` `pinclip catalog build NAME`, with `options` as its flags."""
    if not all(f.default is not MISSING for f in fields(options)):
        raise TypeError(f"{options.__name__}: every option needs a default (the CLI's)")

    def wrap(build: F) -> F:
        BUILDERS.add(name, CatalogBuilder(build, options), help=help)
        return build

    return wrap
