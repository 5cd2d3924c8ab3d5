"""The serving steps of the Python API: embed_catalog, export, build_index and serve.

`serve(..., block=False)` runs the service in a background thread (a notebook's way).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinclip.errors import PinclipError, require_extra

from .index_kinds import DEFAULT_KIND


def embed_catalog(
    model: str | Path, catalog: str | Path, out: str | Path, **options: Any
) -> Path | str | None:
    """Embed every pin of a catalog into parquet parts + manifest under OUT, a path or fsspec
    URL (`pinclip embed`; resumable; `engine='ray'`, `device=`, `backend='auto'`)."""
    if options.get("backend") == "onnx":
        require_extra("export", "pinclip.embed_catalog(backend='onnx')")
    if options.get("engine") == "ray":
        require_extra("ray", "pinclip.embed_catalog(engine='ray')")
    from pinclip.serve.embed import embed_catalog as run_embed

    return run_embed(model, catalog, out, **options)


def export(
    model: str | Path,
    out: str | Path,
    *,
    catalog: str | Path = "data/emoji",
    samples: int = 64,
    int8: bool = False,
):
    """Export the model to ONNX graphs, parity-checked on catalog pins (`pinclip export`)."""
    require_extra("export", "pinclip.export")
    from pinclip.serve.export import export_onnx
    from pinclip.serve.pipeline import catalog_samples

    return export_onnx(model, out, catalog_samples(catalog, samples), int8=int8)


def build_index(
    embeddings: str | Path,
    out: str | Path,
    *,
    kind: str = DEFAULT_KIND,
    catalog_dir: str | Path | None = None,
    **options: Any,
) -> tuple[Any, dict]:
    """A faiss index over pin embeddings (`pinclip index build`; `embeddings` may be the
    `pinclip embed` output, read streaming); returns (PinIndex, info: count, recall@10 vs exact, queries/s)."""
    require_extra("serve", "pinclip.build_index")
    from pinclip.serve.index import build_index as run_build

    return run_build(embeddings, out, kind=kind, catalog_dir=catalog_dir, **options)


@dataclass
class Server:
    """A service running in a background thread (`serve(..., block=False)`)."""

    url: str
    app: Any
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    index: str | Path,
    model: str | Path,
    *,
    catalog: str | Path | None = None,
    backend: str = "auto",
    device: str = "auto",
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    block: bool = True,
    allow_model_mismatch: bool = False,
) -> Server | None:
    """Serve search, related pins, boards and adding pins over HTTP (`pinclip serve`).

    `block=False` starts the server in a background thread and returns a `Server` (its
    `url`, `stop()`; a context manager), e.g. in a notebook; `port=0` picks a free port.
    `allow_model_mismatch` serves a model other than the one the index was embedded with.
    """
    require_extra("serve", "pinclip.serve")
    from pinclip.serve.app import create_app, is_loopback, run
    from pinclip.serve.service import PinService

    if not is_loopback(host) and not api_key:
        raise PinclipError(f"binding {host} exposes the API beyond this machine: pass api_key")
    service = PinService.open(
        index,
        model,
        backend=backend,
        device=device,
        catalog_dir=catalog,
        allow_model_mismatch=allow_model_mismatch,
    )
    if block:
        run(service, host=host, port=port, api_key=api_key)
        return None
    import uvicorn

    app = create_app(service, api_key=api_key)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="pinclip-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise PinclipError(f"the server on {host}:{port} did not start (port in use?)")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return Server(f"http://{host}:{bound}", app, server, thread)
