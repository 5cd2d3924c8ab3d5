"""pinclip.serve: embed a catalog, export to ONNX/int8, index with faiss, serve over HTTP.

embed_catalog(model_dir, catalog_dir, out)         -> out/embeddings.parquet (resumable)
export_onnx(model_dir, out, samples, int8=True)    -> ExportReport (parity-checked)
build_index(embeddings, out, catalog_dir=...)      -> (PinIndex, info with recall@10, qps)
PinService.open(index_dir, model_dir) + create_app -> the FastAPI app
"""

from .app import create_app, run
from .embed import embed_catalog, read_embeddings
from .embedder import OnnxEmbedder, TorchEmbedder, load_embedder
from .export import ExportReport, ParityError, export_onnx
from .index import PinIndex, build_index
from .pipeline import catalog_samples, prepare_serving
from .service import Limits, PinService, ServiceError

__all__ = [
    "ExportReport",
    "Limits",
    "OnnxEmbedder",
    "ParityError",
    "PinIndex",
    "PinService",
    "ServiceError",
    "TorchEmbedder",
    "build_index",
    "catalog_samples",
    "create_app",
    "embed_catalog",
    "export_onnx",
    "load_embedder",
    "prepare_serving",
    "read_embeddings",
    "run",
]
