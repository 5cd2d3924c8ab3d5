"""The one override path for every dataclass config (training runs and model presets).

OmegaConf structured configs type-check each value and reject unknown keys; we turn their
errors into a `ConfigError` that names the source and the nearest valid key, so a typo is a
one-second fix. `pinclip.train.config` (YAML + `key=value`) and `pinclip.model` (presets,
`model.overrides`, saved `config.json`) both build their dataclasses here.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any, Literal

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from .errors import ConfigError


def all_keys(node: Any, prefix: str = "", *, free: tuple[str, ...] = ()) -> list[str]:
    """Every dotted key of a structured config (not descending into `free` dict keys)."""
    keys = []
    for name in node:
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        value = node[name] if OmegaConf.is_dict(node) else None
        if OmegaConf.is_dict(value) and dotted not in free:
            keys += all_keys(value, dotted + ".", free=free)
    return keys


def unknown_key_error(
    key: str, schema: Any, source: str, *, prefix: str = "", free: tuple[str, ...] = ()
) -> ConfigError:
    """'unknown config key K in SOURCE. Did you mean ...?' for a key of `schema`."""
    valid = [prefix + k for k in all_keys(OmegaConf.structured(schema), free=free)]
    hint = difflib.get_close_matches(prefix + key, valid, n=1, cutoff=0.5)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown config key '{prefix}{key}' in {source}.{suggestion}")


def literal_choices(annotation: Any) -> tuple[Any, ...]:
    """The values a `Literal[...]` (or `Literal[...] | None`) annotation allows; () otherwise."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    args = typing.get_args(annotation)
    if args and type(None) in args:  # Optional[Literal[...]]
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and typing.get_origin(inner[0]) is Literal:
            return (*typing.get_args(inner[0]), None)
    return ()


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def choice_error(key: str, value: Any, choices: tuple[Any, ...], where: str = "") -> ConfigError:
    """'KEY=VALUE is not one of ...; did you mean ...?' (the nearest choice, as for keys)."""
    names = [str(c) for c in choices if c is not None]
    hint = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
    did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
    listed = ", ".join(repr(c) for c in choices)
    where = f" in {where}" if where else ""
    return ConfigError(f"{key}={value!r}{where} is not one of {listed}{did_you_mean}")


def check_choices(cfg: Any, section: str) -> None:
    """Every `Literal` field of dataclass `cfg` holds one of its choices: the check each
    config section's `__post_init__` runs, so a Python-built config is checked as a loaded
    one is. `section` is the field's dotted prefix in messages (e.g. "data")."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        choices = literal_choices(hints.get(f.name))
        value = getattr(cfg, f.name)
        if choices and value not in choices:
            raise choice_error(f"{section}.{f.name}" if section else f.name, value, choices)


def _field_type(schema: Any, dotted: str) -> Any:
    """The annotation of dotted field `dotted` of dataclass `schema` (None: not a field)."""
    annotation: Any = schema
    for part in dotted.split("."):
        if not (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
            return None
        annotation = _hints(annotation).get(part)
    return annotation


def merge(base: Any, other: Any, source: str, *, prefix: str = "", free: tuple[str, ...] = ()):
    """OmegaConf.merge(base, other) with typed errors turned into ConfigError."""
    try:
        return OmegaConf.merge(base, other)
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = getattr(err, "full_key", None) or str(err).split("'")[1]
        raise unknown_key_error(
            str(key), OmegaConf.get_type(base), source, prefix=prefix, free=free
        ) from None
    except ValidationError as err:
        key = str(err.full_key)
        choices = literal_choices(_field_type(OmegaConf.get_type(base), key))
        if choices:
            layer = other if OmegaConf.is_config(other) else OmegaConf.create(other)
            value = OmegaConf.select(layer, key, default=None)
            raise choice_error(f"{prefix}{key}", value, choices, source) from None
        msg = str(err.msg).splitlines()[0]
        raise ConfigError(f"bad value in {source}: {prefix}{key}: {msg}") from None


def to_object(cfg: Any, source: str) -> Any:
    """The dataclass instance; its own checks (`__post_init__`) become ConfigError."""
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except (ValueError, ValidationError) as err:
        raise ConfigError(f"{source}: {err}") from None


def nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """{'image.depth': 4, 'fusion': {'depth': 2}} -> nested dicts (dotted keys expanded)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a config section")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = {**node[leaf], **nest(value)}
        else:
            node[leaf] = nest(value) if isinstance(value, dict) else value
    return out


def build(schema: type, layers: list[tuple[Any, str]], *, prefix: str = "") -> Any:
    """`schema`'s defaults ← each (mapping, source) layer in turn, type-checked."""
    cfg = OmegaConf.structured(schema)
    for layer, source in layers:
        cfg = merge(cfg, layer, source, prefix=prefix)
    return to_object(cfg, layers[-1][1] if layers else schema.__name__)


def field_docs(cls: type) -> dict[str, str]:
    """One line of doc per field of dataclass `cls`, from its source comments: the `#`/`#:`
    lines right above the field, else the comment at the end of its line(s). Comments are
    where this project documents config keys, so `--print-config` reads them, not a copy."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}  # line -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#:").strip()
    lines = source.splitlines()
    docs: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line >= 1 and lines[line - 1].strip().startswith("#"):
            above.insert(0, comments.get(line, ""))
            line -= 1
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        docs[node.target.id] = " ".join(above or trailing).strip()
    return docs


def describe(cfg: Any, default: Any, prefix: str = "") -> list[tuple[str, Any, Any, str]]:
    """(dotted key, value in `cfg`, value in `default`, doc) for every leaf of a dataclass
    config, nested sections flattened; classes up the MRO contribute their fields' docs."""
    import dataclasses

    docs: dict[str, str] = {}
    for klass in reversed(type(cfg).__mro__):
        if dataclasses.is_dataclass(klass):
            docs |= field_docs(klass)
    rows = []
    for f in dataclasses.fields(cfg):
        value, base = getattr(cfg, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe(value, base, f"{prefix}{f.name}.")
        else:
            rows.append((prefix + f.name, value, base, docs.get(f.name, "")))
    return rows
