"""pinclip: graph-aware multimodal embeddings (PinCLIP recipe), trained, evaluated and served."""

__version__ = "0.1.0"
