"""pinclip.serve: embed a catalog, export to ONNX/int8, index with faiss, serve over HTTP.

embed_catalog(model_dir, catalog_dir, out)         -> out/ parts + manifest (resumable, Ray; core)
open_embeddings(out) / iter_embeddings(out, cols)  -> one pyarrow dataset / streamed batches
export_onnx(model_dir, out, samples, int8=True)    -> ExportReport (parity-checked; [export])
build_index(embeddings, out, catalog_dir=...)      -> (PinIndex, info with recall@10, qps; [serve])
PinService.open(index_dir, model_dir) + create_app -> the FastAPI app ([serve])

Names are imported on first use, and a name whose extra is missing raises a one-line
`MissingExtraError` ("needs the 'serve' extra: pip install 'pinclip[serve]'"), so the core
install embeds without faiss, FastAPI or onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import Any

from pinclip.errors import require_extra

#: public name -> (module, the extras it needs beyond the core)
_EXPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "embed_catalog": ("pinclip.serve.api", ()),
    "read_embeddings": ("pinclip.serve.embed", ()),
    "open_embeddings": ("pinclip.serve.embed", ()),
    "iter_embeddings": ("pinclip.serve.embed", ()),
    "resolve_device": ("pinclip.serve.embedder", ()),
    "TorchEmbedder": ("pinclip.serve.embedder", ()),
    "OnnxEmbedder": ("pinclip.serve.embedder", ("export",)),
    "load_embedder": ("pinclip.serve.embedder", ()),
    "catalog_samples": ("pinclip.serve.pipeline", ()),
    "prepare_serving": ("pinclip.serve.pipeline", ("serve",)),
    "ExportReport": ("pinclip.serve.export", ()),
    "ParityError": ("pinclip.serve.export", ()),
    "export_onnx": ("pinclip.serve.export", ("export",)),
    "PinIndex": ("pinclip.serve.index", ("serve",)),
    "build_index": ("pinclip.serve.api", ()),
    "Limits": ("pinclip.serve.service", ("serve",)),
    "PinService": ("pinclip.serve.service", ("serve",)),
    "ServiceError": ("pinclip.serve.service", ("serve",)),
    "create_app": ("pinclip.serve.app", ("serve",)),
    "run": ("pinclip.serve.app", ("serve",)),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pinclip.serve' has no attribute {name!r}")
    module, extras = _EXPORTS[name]
    for extra in extras:
        require_extra(extra, f"pinclip.serve.{name}")
    return getattr(importlib.import_module(module), name)


from pinclip._facade import make_callable  # noqa: E402

make_callable(__name__, "pinclip.serve.api:serve")  # pinclip.serve(...) is the pipeline step
