"""FastAPI app over a `PinService`: JSON API under /v1, the web page at /, OpenAPI at /docs."""

from __future__ import annotations

import copy
import hmac
import logging
import re
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .service import PinService, ServiceError


class TextQuery(BaseModel):
    q: str
    k: int = 10


class BodyLimit:
    """Count body bytes as they arrive, so a chunked body (no Content-Length) is bounded too."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes:,} bytes")
            return message

        await self.app(scope, counted_receive, send)


_SECRET_QUERY = re.compile(r"(api_key=)[^&\s\"]+", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Mask `?api_key=` (how <img> tags authenticate) in uvicorn's access and error logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        record.msg = _SECRET_QUERY.sub(r"\1***", str(record.msg))
        return True


STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/", "/healthz", "/docs", "/openapi.json", "/static/")


def create_app(service: PinService, *, api_key: str | None = None) -> FastAPI:
    """The HTTP API. With `api_key`, /v1 needs header `X-API-Key` (or `?api_key=` for <img>)."""
    app = FastAPI(
        title="pinclip", version="1", description="Search pins by text, image or pin; add pins."
    )
    limits = service.limits
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return _error(413, f"request body over {limits.max_body_bytes:,} bytes")
        if api_key and request.url.path.startswith("/v1"):
            given = request.headers.get("x-api-key") or request.query_params.get("api_key") or ""
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return _error(401, "missing or wrong API key: send header X-API-Key")
        return await call_next(request)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, err: ServiceError):
        return _error(err.status, err.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        return _error(422, "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail))

    k_query = Query(10, description=f"results, 1..{limits.max_k}")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "pins": len(service.index), "replayed": service.replayed}

    @app.get("/v1/search")
    def search(q: str = Query(..., description="text query"), k: int = k_query) -> dict:
        return {"query": q, "results": service.search_text(q, k)}

    @app.post("/v1/search")
    def search_json(body: TextQuery) -> dict:
        return {"query": body.q, "results": service.search_text(body.q, body.k)}

    @app.post("/v1/search/image")
    def search_image(file: UploadFile = File(...), k: int = k_query) -> dict:
        return {"results": service.search_image(file.file.read(), k)}

    @app.get("/v1/pins/{pin_id}/related")
    def related(pin_id: str, k: int = k_query) -> dict:
        return {"pin_id": pin_id, "results": service.related(pin_id, k)}

    @app.get("/v1/pins/{pin_id}/boards")
    def boards(pin_id: str, k: int = Query(5, description=f"boards, 1..{limits.max_k}")) -> dict:
        return {"pin_id": pin_id, "boards": service.boards(pin_id, k)}

    @app.get("/v1/pins/{pin_id}/image")
    def pin_image(pin_id: str) -> FileResponse:
        return FileResponse(service.image_path(pin_id))

    @app.get("/v1/catalog/{path:path}")
    def catalog_file(path: str) -> FileResponse:
        return FileResponse(service.catalog_file(path))

    @app.post("/v1/pins", status_code=201)
    def add_pin(
        file: UploadFile = File(..., description="the pin's image"),
        title: str = Form("", max_length=500),
        description: str = Form("", max_length=5000),
        pin_id: str | None = Form(None),
    ) -> dict:
        return service.add_pin(file.file.read(), title, description, pin_id)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(
    service: PinService, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None
) -> None:
    """Serve with uvicorn; refuses a non-loopback address without an API key."""
    import uvicorn

    if not is_loopback(host) and not api_key:
        raise ValueError(f"binding {host} exposes the API beyond this machine: pass --api-key")
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["filters"] = {"redact": {"()": RedactSecrets}}
    for handler in log_config["handlers"].values():
        handler["filters"] = ["redact"]
    uvicorn.run(
        create_app(service, api_key=api_key),
        host=host,
        port=port,
        log_level="info",
        log_config=log_config,
    )
