"""Evaluate one model, or several models and baselines on one split, from short specs.

A spec is `[LABEL=]WHAT`, WHAT a registered baseline (`BASELINES`, one table): a name
(`random`, `minilm`, `lite0`, `minilm+lite0`), `NAME:ARG` (`open_clip:RUN_DIR`, a run of
`pinclip train-open-clip`; `zero-shot:BACKBONE`, a foundation's own embeddings, e.g.
`zero-shot:hf:google/siglip2-base-patch16-224`; `pinclip:RUN_DIR`), or the path of a
PinCLIP run dir / model dir. Every model is scored on the same split: the one of
`split_from` (a PinCLIP run), rebuilt from its config.yaml.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from rich.console import Console

from pinclip.errors import InputError
from pinclip.progress import Progress

from .baselines import BaselineContext, Embedder, PinCLIPEmbedder, create_baseline
from .baselines.pretrained import StoredFeatures
from .data import EvalData
from .report import write_report
from .tasks import EvalResult, evaluate_embedder


def parse_spec(spec: str) -> tuple[str | None, str]:
    """'LABEL=WHAT' -> (LABEL, WHAT), split at the last "="; 'WHAT' -> (None, WHAT)."""
    label, sep, what = spec.rpartition("=")
    return (label, what) if sep and label and not Path(spec).exists() else (None, spec)


def build_embedders(
    specs: list[str], device: str = "cpu", console: Console | None = None
) -> list[Embedder]:
    """Embedders for specs, each resolved through the baseline registry (`BASELINES`); the
    comparison's shared baselines are made once (`minilm+lite0` reuses `minilm` and `lite0`),
    and read their features from the first PinCLIP model's feature store when it holds them."""
    context = BaselineContext(device=device, console=console)
    out = []
    for spec in specs:
        label, what = parse_spec(spec)
        emb = create_baseline(what, context)
        if label:
            emb.name = label
        out.append(emb)
    ours = next((e for e in out if isinstance(e, PinCLIPEmbedder)), None)
    if ours is not None:
        stored = StoredFeatures(ours.model, console=console)
        for emb in {id(e): e for e in [*context.instances.values(), *out]}.values():
            emb.use_stored_features(stored)
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise InputError(f"two models share a name in {names}: label them, e.g. 'ours=runs/a'")
    return out


def evaluate_models(
    embedders: list[Embedder],
    data: EvalData,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    console: Console | None = None,
    tasks: Collection[str] | None = None,
) -> list[EvalResult]:
    console = console or Console(stderr=True)
    results = []
    with Progress(console=console) as progress:
        task = progress.add_task("evaluate", total=len(embedders))
        for emb in embedders:
            progress.update(task, description=f"evaluate {emb.name}")
            results.append(
                evaluate_embedder(
                    emb, data, n_resamples=n_resamples, seed=seed, tasks=tasks, console=console
                )
            )
            progress.advance(task)
    return results


def evaluate_model(
    path: str | Path,
    *,
    catalog: str | Path | None = None,
    out: str | Path | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    console: Console | None = None,
    device: str = "cpu",
    tasks: Collection[str] | None = None,
) -> tuple[EvalResult, Path]:
    """Every task (or `tasks`) for one PinCLIP run or model dir on its run's split; writes
    the JSON."""
    data = EvalData.from_run(path, catalog)
    result = evaluate_models(
        [PinCLIPEmbedder(path, name=Path(path).name, device=device)],
        data,
        n_resamples=n_resamples,
        seed=seed,
        console=console,
        tasks=tasks,
    )[0]
    target = Path(out) if out else Path(path) / "eval" / "results.json"
    return result, result.save(target)


def compare(
    specs: list[str],
    *,
    split_from: str | Path,
    out_dir: str | Path,
    catalog: str | Path | None = None,
    ours: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    console: Console | None = None,
    device: str = "cpu",
) -> tuple[Path, list[EvalResult]]:
    """Score every spec on `split_from`'s split and write the report; returns (report.md, results)."""
    data = EvalData.from_run(split_from, catalog)
    embedders = build_embedders(specs, device, console=console)
    results = evaluate_models(embedders, data, n_resamples=n_resamples, seed=seed, console=console)
    report = write_report(results, data, out_dir, ours=ours, n_resamples=n_resamples, seed=seed)
    return report, results
