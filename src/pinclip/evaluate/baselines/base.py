"""The plug-in interface every evaluated model implements, and the name registry.

An `Embedder` turns the pins of an `EvalData` into embeddings in one shared space:
`pin` (what a pin is retrieved by), `image` (a pin from its image alone) and `text` (a pin
from its text alone), and embeds free text (board titles) into the same space. A model
that lacks a modality returns None for it; tasks that need it are then reported as n/a.
Every returned tensor is float32, L2-normalised, one row per pin.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console

from pinclip.errors import InputError
from pinclip.evaluate.data import EvalData
from pinclip.registry import Registry


@dataclass
class PinEmbeddings:
    pin: torch.Tensor  # [N, D] candidates and fused queries
    image: torch.Tensor | None  # [N, D] image-only path
    text: torch.Tensor | None  # [N, D] text-only path


class Embedder(ABC):
    """A model or baseline under evaluation. Subclass, set `name`, implement `embed_pins`."""

    name: str = "embedder"
    #: tasks this model is at the floor on by construction, and why: reported n/a, not scored
    not_applicable: dict[str, str] = {}
    #: a reference floor (random vectors), never "the best baseline"
    is_floor: bool = False

    @abstractmethod
    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        """Embeddings of every pin of `data` (row i = pin i of `data.graph`)."""

    def embed_texts(self, texts: list[str]) -> torch.Tensor | None:
        """Free text (e.g. board titles) in the `pin` space; None when the model reads no text."""
        return None

    def trained_on(self) -> str | None:
        """A run dir whose metrics.jsonl holds this model's training losses (None: not trained)."""
        return None

    def use_stored_features(self, stored) -> None:
        """A PinCLIP run's feature store (`pretrained.StoredFeatures`) that may already hold
        this model's features, so it need not compute them (default: not used)."""
        return None


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def check_embeddings(emb: PinEmbeddings, n_pins: int, name: str) -> PinEmbeddings:
    """Enforce the contract: right row count, one dimension, finite, unit norm."""
    dim = emb.pin.shape[1]
    for part in ("pin", "image", "text"):
        x = getattr(emb, part)
        if x is None:
            continue
        if x.ndim != 2 or x.shape != (n_pins, dim):
            raise ValueError(
                f"baseline {name!r}: {part} embeddings have shape {tuple(x.shape)}, expected ({n_pins}, {dim})"
            )
        if not torch.isfinite(x).all():
            raise ValueError(f"baseline {name!r}: {part} embeddings contain NaN or inf")
        norms = x.norm(dim=1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
            raise ValueError(f"baseline {name!r}: {part} embeddings are not L2-normalised")
    return emb


@dataclass(frozen=True)
class Baseline:
    """A registered baseline: `make(context, arg, **options) -> Embedder`.

    `arg` names what follows `NAME:` in a spec (`zero-shot:SPEC`, `open_clip:RUN_DIR`); None
    for a bare name. A `shared` baseline is made once per comparison (its encoders load
    once; `minilm+lite0` reuses the `minilm` and `lite0` of the same comparison)."""

    make: Callable[..., Embedder]
    arg: str | None = None
    shared: bool = False


BASELINES: Registry[Baseline] = Registry("baseline")


@dataclass
class BaselineContext:
    """What the baselines of one comparison share: the device PinCLIP models run on, a
    console, and the instances of `shared` baselines."""

    device: str = "cpu"
    console: Console | None = None
    instances: dict[str, Embedder] = field(default_factory=dict)

    def shared(self, name: str) -> Embedder:
        """The comparison's one instance of the bare baseline `name`."""
        if name not in self.instances:
            self.instances[name] = BASELINES.get(name).make(self, None)
        return self.instances[name]


def register_baseline(
    name: str, *, help: str = "", arg: str | None = None, shared: bool = False
) -> Callable[[Callable[..., Embedder]], Callable[..., Embedder]]:
    """Decorator: make an `Embedder` class (or factory) `pinclip compare NAME`; with `arg`,
    `pinclip compare NAME:ARG`, ARG passed as its first argument."""

    def wrap(factory: Callable[..., Embedder]) -> Callable[..., Embedder]:
        def make(context: BaselineContext, value: str | None, **options) -> Embedder:
            return factory(value, **options) if arg else factory(**options)

        BASELINES.add(name, Baseline(make, arg, shared), help=help or _first_line(factory))
        return factory

    return wrap


def _first_line(obj: object) -> str:
    return (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""


def list_baselines() -> list[str]:
    return sorted(BASELINES.names())


def resolve_spec(spec: str) -> tuple[str, str | None]:
    """A spec -> (registered name, its argument): `NAME`, `NAME:ARG`, or an existing path
    (a PinCLIP run or model dir: `pinclip:PATH`). Unknown: a ConfigError with the names."""
    if spec in BASELINES:
        return spec, None
    name, sep, value = spec.partition(":")
    if sep and name in BASELINES and BASELINES.get(name).arg:
        return name, value
    if Path(spec).exists() and "pinclip" in BASELINES:
        return "pinclip", spec
    BASELINES.entry(spec)  # raises: unknown baseline, did you mean, the known names
    raise AssertionError("unreachable")


def create_baseline(spec: str, context: BaselineContext | None = None, **options) -> Embedder:
    """The baseline a spec names (`random`, `minilm+lite0`, `zero-shot:SPEC`,
    `open_clip:RUN_DIR`, a PinCLIP run dir, ...; `BASELINES`), made through its registration."""
    context = context or BaselineContext()
    name, value = resolve_spec(spec)
    entry = BASELINES.entry(name)
    if entry.value.arg and not value:
        raise InputError(f"baseline {name!r} needs {name}:{entry.value.arg}")
    if entry.value.shared and not options:
        return context.shared(name)
    return entry.value.make(context, value, **options)


def baseline_help() -> str:
    """The spec forms `pinclip compare` accepts, from the registry."""
    forms = [f"{e.name}:{e.value.arg}" if e.value.arg else e.name for e in BASELINES]
    return " | ".join(forms)
