"""One registry type for every kind of plug-in (timm's shape: a table behind one factory).

Each plug-in kind (catalog builders, baselines, evaluation tasks, index kinds, backbones)
owns one `Registry`; a plug-in is one module that registers itself with a decorator. The
CLI's help, `pinclip models` and the parametrised tests read the same table, so adding a
plug-in never means restating its name elsewhere.

    INDEX_KINDS: Registry[IndexKind] = Registry("index kind")
    INDEX_KINDS.add("hnsw", IndexKind("HNSW32,Flat"), help="HNSW graph, the default")

    INDEX_KINDS.get("hnws")  # ConfigError: unknown index kind 'hnws'; did you mean 'hnsw'?

The tables: `pinclip.data.builders.BUILDERS` (catalog builders, each with an options
dataclass), `pinclip.evaluate.baselines.BASELINES`, `pinclip.evaluate.tasks.EVAL_TASKS`,
`pinclip.serve.index_kinds.INDEX_KINDS`, `pinclip.model.backbones.BACKBONES`; how to add to
each: docs/architecture.md, "Adding a plug-in".
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pinclip.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plug-in: its name, the object itself, a one-line help and free metadata."""

    name: str
    value: T
    help: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A named table of plug-ins of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, help: str = "", **meta: Any) -> Callable[[T], T]:
        """Decorator: register `value` under `name` (a name registered twice is a bug)."""

        def wrap(value: T) -> T:
            self.add(name, value, help=help, **meta)
            return value

        return wrap

    def add(self, name: str, value: T, *, help: str = "", **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, value, help, dict(meta))

    def entry(self, name: str) -> Entry[T]:
        """The entry of `name`, or a ConfigError listing the known names (and the nearest)."""
        if name not in self._entries:
            hint = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.5)
            did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{did_you_mean} (known: {', '.join(self.names())})"
            )
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).value

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def help_text(self) -> str:
        """`name: help` per entry, for a CLI option's help."""
        return "; ".join(f"{e.name}: {e.help}" if e.help else e.name for e in self)
