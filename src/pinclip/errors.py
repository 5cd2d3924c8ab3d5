"""One base for expected failures: bad input, bad config, a missing file or extra.

Everything a user can fix by changing what they pass raises a `PinclipError` subclass with
a message that names the file/row/field and says what to do. The CLI catches only this
base (one red `error:` line, exit 2); any other exception is a bug and shows its traceback.
"""

from __future__ import annotations


class PinclipError(Exception):
    """An expected failure; the message says what to change."""


class MissingExtraError(PinclipError, ImportError):
    """A command needs an optional dependency group that is not installed."""

    def __init__(self, extra: str, module: str, what: str = "this command") -> None:
        super().__init__(
            f"{what} needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'pinclip[{extra}]'"
        )
        self.extra = extra


def require(module: str, extra: str, what: str = "this command"):
    """Import `module`, or raise a one-line MissingExtraError naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name and module.split(".")[0] != err.name.split(".")[0]:
            raise  # the module exists but one of *its* imports is broken: a real bug
        raise MissingExtraError(extra, module, what) from None


class InputError(PinclipError, ValueError):
    """What the user passed is not what the command needs (a bad value, the wrong kind of
    file, inconsistent data)."""


class NotFoundError(PinclipError, FileNotFoundError):
    """A path the user passed does not hold what the command needs (e.g. not a model dir)."""


class ConfigError(InputError):
    """A config file, preset or override is invalid; the message says what to change."""


#: The modules each pip extra brings (pyproject.toml's optional-dependencies), checked by
#: `require_extra` before a command starts so a missing one fails in one line, not mid-run.
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": (
        "faiss",
        "fastapi",
        "pydantic",
        "uvicorn",
        "multipart",
        "prometheus_client",
        "fastapi_offline",
    ),
    "export": ("onnx", "onnxruntime"),
    "eval": ("matplotlib", "sklearn", "open_clip"),
    "ray": ("ray",),
    "qdrant": ("qdrant_client",),
    "lancedb": ("lancedb",),
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow",),
    "vlm": ("peft",),
}


def require_extra(extra: str, what: str = "this command") -> None:
    """Raise MissingExtraError unless every module of pip extra `extra` imports."""
    for module in EXTRAS[extra]:
        require(module, extra, what)
