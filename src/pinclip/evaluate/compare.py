"""Evaluate one model, or several models and baselines on one split, from short specs.

A spec is `[LABEL=]WHAT`, WHAT being a registered baseline name (`random`, `minilm`,
`lite0`, `minilm+lite0`), `open_clip:RUN_DIR` (a run of `pinclip train-open-clip`),
`zero-shot:BACKBONE` (a foundation's own embeddings, e.g. `zero-shot:hf:google/siglip2-base-
patch16-224`, `zero-shot:pinclip:runs/foundation`), or the
path of a PinCLIP run dir / model dir. Every model is scored on the same split: the one of
`split_from` (a PinCLIP run), rebuilt from its config.yaml.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from pinclip.errors import InputError
from pinclip.progress import Progress

from .baselines import Embedder, PinCLIPEmbedder, create_baseline
from .baselines.open_clip import OpenCLIPEmbedder
from .baselines.pretrained import ConcatEmbedder, Lite0Embedder, MiniLMEmbedder, StoredFeatures
from .baselines.zero_shot import PREFIX as ZERO_SHOT
from .baselines.zero_shot import ZeroShotEmbedder
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
    """Embedders for specs; the pretrained encoders are loaded once and shared by `minilm+lite0`,
    and read their features from the first PinCLIP model's feature store when it holds them."""
    shared: dict[str, Embedder] = {}

    def pretrained(name: str) -> Embedder:
        if name not in shared:
            if name == "minilm":
                shared[name] = MiniLMEmbedder()
            elif name == "lite0":
                shared[name] = Lite0Embedder()
            else:
                shared[name] = ConcatEmbedder(pretrained("lite0"), pretrained("minilm"))
        return shared[name]

    out = []
    for spec in specs:
        label, what = parse_spec(spec)
        if what in ("minilm", "lite0", "minilm+lite0"):
            emb = pretrained(what)
        elif what.startswith(ZERO_SHOT):
            emb = ZeroShotEmbedder(what.removeprefix(ZERO_SHOT))
        elif what.startswith("open_clip:"):
            emb = OpenCLIPEmbedder(what.removeprefix("open_clip:"))
        elif Path(what).exists():
            emb = PinCLIPEmbedder(what, device=device)
        else:
            emb = create_baseline(what)  # raises with the list of known names
        if label:
            emb.name = label
        out.append(emb)
    ours = next((e for e in out if isinstance(e, PinCLIPEmbedder)), None)
    if ours is not None:
        stored = StoredFeatures(ours.model, console=console)
        for emb in shared.values():
            if isinstance(emb, MiniLMEmbedder | Lite0Embedder):
                emb.stored = stored
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
) -> list[EvalResult]:
    console = console or Console(stderr=True)
    results = []
    with Progress(console=console) as progress:
        task = progress.add_task("evaluate", total=len(embedders))
        for emb in embedders:
            progress.update(task, description=f"evaluate {emb.name}")
            results.append(
                evaluate_embedder(emb, data, n_resamples=n_resamples, seed=seed, console=console)
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
) -> tuple[EvalResult, Path]:
    """Every task for one PinCLIP run or model dir on its run's split; writes the JSON."""
    data = EvalData.from_run(path, catalog)
    result = evaluate_models(
        [PinCLIPEmbedder(path, name=Path(path).name, device=device)],
        data,
        n_resamples=n_resamples,
        seed=seed,
        console=console,
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
