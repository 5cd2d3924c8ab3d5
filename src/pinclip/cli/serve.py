"""`pinclip embed | export | index build | serve`: thin faces over pinclip.serve."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

from pinclip.errors import require_extra
from pinclip.progress import Progress
from pinclip.serve.index_kinds import DEFAULT_KIND, INDEX_KINDS

from ._errors import fail

console = Console(stderr=True)
index_app = typer.Typer(help="Build ANN indexes over embeddings.", no_args_is_help=True)


DEVICE_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."
BACKEND_HELP = (
    "auto (ONNX Runtime when an export exists (MODEL/onnx or MODEL itself) and the device is "
    "the CPU, else torch), torch (eager) or onnx."
)


@contextmanager
def _progress(description: str):
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def embed(
    model: Path = typer.Argument(
        ..., help="Model directory (save_pretrained) or, with --backend onnx, an export."
    ),
    catalog: Path = typer.Argument(..., help="Catalog directory."),
    out: str = typer.Argument(
        ...,
        help="Output directory or fsspec URL (s3://..., file:///shared/...): parts/ + "
        "manifest.json, read as one dataset.",
    ),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    engine: str = typer.Option("local", help="local, or ray (Ray Data actors)."),
    ray_address: str = typer.Option(
        None,
        "--ray-address",
        envvar="RAY_ADDRESS",
        help="Join this Ray cluster (e.g. ray://head:10001 or auto); default: start a local Ray.",
    ),
    batch_size: int = typer.Option(64, min=1),
    part_size: int = typer.Option(512, min=1, help="Rows per resumable part."),
    workers: int = typer.Option(2, min=1, help="Image decoding threads (local) or Ray actors."),
    features: Path = typer.Option(
        None,
        "--features",
        help="The feature store training built (<data.cache_dir>/features): frozen outputs "
        "are read from it, not recomputed, when it holds every pin (checked on a sample).",
    ),
) -> None:
    """Embed every pin of a catalog; re-run the same command to resume after a kill."""
    if backend == "onnx":
        require_extra("export", "pinclip embed --backend onnx")
    if engine == "ray":
        require_extra("ray", "pinclip embed --engine ray")
    from pinclip.serve import embed_catalog

    with _progress("embedding pins") as progress:
        path = embed_catalog(
            model,
            catalog,
            out,
            backend=backend,
            device=device,
            engine=engine,
            ray_address=ray_address,
            batch_size=batch_size,
            part_size=part_size,
            workers=workers,
            progress=progress,
            features=features,
        )
    console.print(f"[green]done[/]: {path}")


def export(
    model: Path = typer.Argument(..., help="Model directory (save_pretrained)."),
    out: Path = typer.Argument(..., help="Output directory for the ONNX graphs."),
    format: str = typer.Option("onnx", "--format", help="Only onnx."),
    int8: bool = typer.Option(
        False, "--int8", help="Quantize parts where int8 is faster and accurate."
    ),
    catalog: Path = typer.Option(
        None,
        help="Catalog whose pins calibrate and check parity (default: the catalog the "
        "model's training run used).",
    ),
    samples: int = typer.Option(64, min=2, help="Catalog pins used for calibration and parity."),
) -> None:
    """Export image tower, text tower and fusion to ONNX; checks parity (cosine >= 0.99)."""
    require_extra("export", "pinclip export")
    from pinclip.serve import catalog_samples, export_onnx
    from pinclip.serve.export import refuse_vlm_export

    if format != "onnx":
        fail(f"unknown format {format!r}; only onnx is supported")
    refuse_vlm_export(model)  # before reading the catalog: a VLM model is not exported
    catalog = catalog or run_catalog(model)
    report = export_onnx(model, out, catalog_samples(catalog, samples), int8=int8)
    console.print(f"graphs: {report.graphs}")
    console.print(
        "parity (min cosine vs PyTorch): "
        + ", ".join(f"{k} {v:.5f}" for k, v in report.parity.items())
    )
    if report.timings_ms:
        console.print(
            "int8 measurements: " + ", ".join(f"{k} {v:.3f}" for k, v in report.timings_ms.items())
        )
    console.print(f"[green]done[/]: {out}")


def run_catalog(model: Path) -> Path:
    """The catalog the run holding `model` (a run dir, or its best/ or final/) trained on."""
    from pinclip.errors import InputError
    from pinclip.evaluate.data import find_run_dir
    from pinclip.train import load_config

    run = find_run_dir(Path(model))
    if run is None:
        raise InputError(
            f"{model}: no training run's config.yaml beside this model to take its catalog "
            "from; pass --catalog DIR"
        )
    return Path(load_config(run / "config.yaml").data.catalog)


@index_app.command("build")
def index_build(
    embeddings: str = typer.Argument(..., help="The output directory (or URL) of `pinclip embed`."),
    out: Path = typer.Argument(..., help="Index directory (written atomically)."),
    kind: str = typer.Option(
        DEFAULT_KIND,
        help=f"{INDEX_KINDS.help_text()}; or any faiss index_factory string ({{nlist}} is "
        "filled in).",
    ),
    catalog: Path = typer.Option(None, help="Catalog for titles, images and boards."),
) -> None:
    """Build a faiss index streaming from the embedding parts; report recall@10 vs exact."""
    require_extra("serve", "pinclip index build")
    from pinclip.serve import build_index

    with _progress("indexing pins") as progress:
        _, info = build_index(embeddings, out, kind=kind, catalog_dir=catalog, progress=progress)
    console.print(
        f"{info['kind']} index ({info['factory']}) of {info['count']} pins: recall@10 "
        f"{info['recall@10']:.4f} vs exact, {info['qps']:.0f} queries/s, "
        f"{info['bytes_per_vector']:.0f} B/vector (raw {4 * info['dim']})"
    )
    console.print(f"[green]done[/]: {out}")


def serve(
    index: Path = typer.Option(..., "--index", help="Index directory from `pinclip index build`."),
    model: Path = typer.Option(
        ..., "--model", help="The model the index was built with (or its ONNX export)."
    ),
    catalog: Path = typer.Option(
        None, "--catalog", help="Catalog serving result images (default: the index's)."
    ),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    read_only: bool = typer.Option(
        False,
        "--read-only",
        help="A replica: no pin store lock, no adding; follows the writer's log of added pins.",
    ),
    refresh_seconds: float = typer.Option(1.0, min=0.05, help="How often a replica looks."),
    batch_wait_ms: float = typer.Option(
        2.0, min=0.0, help="Micro-batching of query forwards: wait this long for more (0: off)."
    ),
    host: str = typer.Option("127.0.0.1", help="Bind address; non-loopback needs --api-key."),
    port: int = typer.Option(8000),
    api_key: str = typer.Option(
        None, "--api-key", envvar="PINCLIP_API_KEY", help="Required header X-API-Key."
    ),
    allow_model_mismatch: bool = typer.Option(
        False,
        "--allow-model-mismatch",
        help="Serve although --model is not the model the index was embedded with (its "
        "fingerprint, recorded in the index): queries will not match the indexed vectors.",
    ),
) -> None:
    """Serve search, related pins, board recommendations and adding pins over HTTP."""
    require_extra("serve", "pinclip serve")
    if backend == "onnx":
        require_extra("export", "pinclip serve --backend onnx")
    from pinclip.serve import PinService, run
    from pinclip.serve.app import is_loopback

    if not is_loopback(host) and not api_key:
        fail(
            ValueError(
                f"binding {host} exposes the API beyond this machine: pass --api-key (or PINCLIP_API_KEY)"
            )
        )
    service = PinService.open(
        index,
        model,
        backend=backend,
        device=device,
        catalog_dir=catalog,
        read_only=read_only,
        refresh_s=refresh_seconds,
        batch_wait_ms=batch_wait_ms,
        allow_model_mismatch=allow_model_mismatch,
    )
    console.print(
        f"{len(service.index)} pins ({service.replayed} added pins replayed); open "
        f"http://{host}:{port}/ (API: /docs, /openapi.json; Prometheus: /metrics)"
    )
    run(service, host=host, port=port, api_key=api_key)


@index_app.command("export")
def index_export(
    embeddings: str = typer.Argument(..., help="The output directory (or URL) of `pinclip embed`."),
    to: str = typer.Option(..., "--to", help="qdrant or lancedb."),
    path: str = typer.Option(
        None, "--path", help="Qdrant local-mode directory, or LanceDB directory / object-store URI."
    ),
    url: str = typer.Option(None, "--url", help="Qdrant server URL, e.g. http://qdrant:6333."),
    api_key: str = typer.Option(None, "--api-key", envvar="QDRANT_API_KEY", help="Qdrant API key."),
    collection: str = typer.Option("pins", help="Collection (Qdrant) or table (LanceDB) name."),
    catalog: Path = typer.Option(None, help="Catalog for the payload's titles and boards."),
    index: Path = typer.Option(
        None, "--index", help="A faiss index dir to compare the database's top-k with."
    ),
    check_queries: int = typer.Option(200, min=0, help="Pins searched to check the export."),
) -> None:
    """Stream the embeddings into Qdrant or LanceDB (payload + three named vectors), then
    run the same searches there and by exact search and print recall@10."""
    from pinclip.serve.vectordb import VectorStore, check_export, export_vectors

    store = VectorStore(to, collection, path=path, url=url, api_key=api_key)
    with _progress(f"exporting to {to}") as progress:
        n = export_vectors(embeddings, store, catalog_dir=catalog, progress=progress)
    check = (
        check_export(embeddings, store, queries=check_queries, index_dir=index)
        if check_queries
        else {}
    )
    console.print(f"{n} pins in {to} collection {collection!r} ({path or url})")
    for name, value in check.items():
        if name != "queries":
            console.print(f"{name}: {value:.4f} over {int(check['queries'])} pin queries")
    console.print("[green]done[/]")
