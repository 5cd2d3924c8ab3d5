"""FastAPI app over a `PinService`: a typed JSON API under /v1, the web page at /, /metrics.

Every route declares its response model, so /openapi.json is a usable client contract
(tests/serve/test_openapi.py validates every response against it). Errors have FastAPI's
shape, `{"detail": "what to change"}` (validation errors: FastAPI's list of field errors).
/metrics is the Prometheus text format: requests, latency, index size, pins added.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pinclip.errors import InputError

from .service import Limits, PinService, ServiceError

#: Most items one /v1/embed request may carry (bounds memory and latency per request).
MAX_EMBED_BATCH = 64


# ----- the API's types -----------------------------------------------------------------------


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong and what to change; for a malformed request, FastAPI's "
        "list of field errors ({loc, msg, type})."
    )


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    pins: int = Field(description="Pins in the index, added ones included.")
    replayed: int = Field(description="Added pins replayed from the store at start-up.")


class PinHit(BaseModel):
    pin_id: str
    title: str
    score: float = Field(description="Cosine similarity to the query.")
    image_url: str


class SearchResponse(BaseModel):
    query: str | None = None
    offset: int = Field(0, description="Rank of the first result (0-based): pages of k.")
    results: list[PinHit]


class TextQuery(BaseModel):
    q: str = Field(description="Text query.")
    k: int = Field(10, description="Number of results.")
    offset: int = Field(0, description="Skip this many results (the next page: offset + k).")


class RelatedResponse(BaseModel):
    pin_id: str
    offset: int = 0
    results: list[PinHit]


class BoardHit(BaseModel):
    board_id: str
    title: str
    score: float = Field(description="Share of the nearest pins' similarity that votes for it.")


class BoardsResponse(BaseModel):
    pin_id: str
    boards: list[BoardHit]


class BoardRef(BaseModel):
    board_id: str
    title: str


class PinCard(BaseModel):
    pin_id: str
    title: str
    image_url: str
    source: str = Field(description="'catalog' or 'added' (over the API).")


class PinDetail(PinCard):
    description: str = ""
    link: str = Field("", description="The pin's link (its source page), if any.")
    boards: list[BoardRef] = Field(description="The boards the pin is saved to.")


class PinsPage(BaseModel):
    total: int
    offset: int
    pins: list[PinCard]


class BoardPage(BaseModel):
    board_id: str
    title: str
    total: int = Field(description="Pins on the board.")
    offset: int
    pins: list[PinCard]


class AddedPin(BaseModel):
    pin_id: str
    title: str
    image_url: str


class EmbedRequest(BaseModel):
    texts: list[str] | None = Field(None, description="Texts to embed.")
    images: list[str] | None = Field(
        None, description="Images to embed, each a base64-encoded image file (PNG, JPEG, ...)."
    )


class EmbedResponse(BaseModel):
    count: int
    dim: int
    image_emb: list[list[float]] | None = Field(None, description="Unit image embeddings.")
    text_emb: list[list[float]] | None = Field(None, description="Unit text embeddings.")
    pin_emb: list[list[float]] | None = Field(
        None, description="Unit pin embeddings of (image, text) pairs: both lists, same length."
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422)
}
_FILE = {
    200: {
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The image file.",
    },
    **_ERRORS,
}


# ----- middleware ----------------------------------------------------------------------------


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


class _Metrics:
    """Prometheus metrics of one app (its own registry: several apps in a process never mix)."""

    def __init__(self, service: PinService) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pinclip_http_requests",
            "HTTP requests by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pinclip_http_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        index_pins = Gauge(
            "pinclip_index_pins", "Pins in the index, added ones included.", registry=self.registry
        )
        index_pins.set_function(lambda: len(service.index))
        self.pins_added = Counter(
            "pinclip_pins_added", "Pins added over the API since start-up.", registry=self.registry
        )
        self.registry.register(_ServiceCounters(service))

    def observe(self, request: Request, status: int, seconds: float) -> None:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _ServiceCounters:
    """Counters the service keeps itself, read at scrape time (a custom Prometheus collector)."""

    def __init__(self, service: PinService) -> None:
        self.service = service

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily(
            "pinclip_replica_refresh_errors",
            "A read-only replica's failed looks at the writer's log since start-up.",
            value=self.service.follow_errors,
        )


STATIC = Path(__file__).parent / "static"
DOCS_ASSETS = "/static-offline-docs/"  # Swagger UI's and ReDoc's files (fastapi-offline)
OPEN_PATHS = ("/", "/healthz", "/metrics", "/docs", "/openapi.json", "/static/", DOCS_ASSETS)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


# ----- the app -------------------------------------------------------------------------------


def create_app(service: PinService, *, api_key: str | None = None) -> FastAPI:
    """The HTTP API. With `api_key`, /v1 needs header `X-API-Key` (or `?api_key=` for <img>).

    /docs and /redoc load Swagger UI and ReDoc from the installed `fastapi-offline` package
    (never a CDN), so they work on an air-gapped machine. Routes are registered in a fixed
    order (the helpers below, called in sequence), which is the order of /openapi.json."""
    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(
        title="pinclip",
        version="1",
        description="Search pins by text, image or pin; boards for a pin; add pins; embed.",
    )
    _publish_uploads_as_binary(app)
    metrics = _Metrics(service)
    _add_guards(app, service.limits, metrics, api_key)
    _add_ops_routes(app, service, metrics)
    _add_search_routes(app, service)
    _add_browse_routes(app, service)
    _add_write_routes(app, service, metrics)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _add_guards(app: FastAPI, limits: Limits, metrics: _Metrics, api_key: str | None) -> None:
    """Body-size limit, API key check, request metrics, and `{"detail": ...}` error bodies.

    Checked before routing so an oversized or unauthenticated request never reaches a route."""
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            response = _error(413, f"request body over {limits.max_body_bytes:,} bytes")
        elif (
            api_key
            and request.url.path.startswith("/v1")
            and not hmac.compare_digest(
                (
                    request.headers.get("x-api-key") or request.query_params.get("api_key") or ""
                ).encode(),
                api_key.encode(),
            )
        ):
            response = _error(401, "missing or wrong API key: send header X-API-Key")
        else:
            response = await call_next(request)
        metrics.observe(request, response.status_code, time.perf_counter() - started)
        return response

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, err: ServiceError):
        return _error(err.status, err.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail))


def _paging(limits: Limits) -> tuple[Any, Any]:
    """The `k` and `offset` query parameters of every ranked list, bounded by `limits`."""
    k_query = Query(10, description=f"results, 1..{limits.max_k}")
    offset_query = Query(
        0,
        ge=0,
        description=f"skip this many results (next page); offset + k <= {limits.max_results}",
    )
    return k_query, offset_query


def _add_ops_routes(app: FastAPI, service: PinService, metrics: _Metrics) -> None:
    """/healthz and /metrics: open (no API key), for load balancers and Prometheus."""

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok", pins=len(service.index), replayed=service.replayed)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text exposition format.",
            }
        },
    )
    def prometheus_metrics() -> Response:
        return metrics.exposition()


def _add_search_routes(app: FastAPI, service: PinService) -> None:
    """Search by text (GET query or JSON body) and by an uploaded image."""
    k_query, offset_query = _paging(service.limits)

    @app.get("/v1/search", response_model=SearchResponse, responses=_ERRORS)
    def search(
        q: str = Query(..., description="text query"), k: int = k_query, offset: int = offset_query
    ) -> SearchResponse:
        return SearchResponse(query=q, offset=offset, results=service.search_text(q, k, offset))

    @app.post("/v1/search", response_model=SearchResponse, responses=_ERRORS)
    def search_json(body: TextQuery) -> SearchResponse:
        results = service.search_text(body.q, body.k, body.offset)
        return SearchResponse(query=body.q, offset=body.offset, results=results)

    @app.post("/v1/search/image", response_model=SearchResponse, responses=_ERRORS)
    def search_image(
        file: UploadFile = File(..., description="the query image"),
        k: int = k_query,
        offset: int = offset_query,
    ) -> SearchResponse:
        results = service.search_image(file.file.read(), k, offset)
        return SearchResponse(offset=offset, results=results)


def _add_browse_routes(app: FastAPI, service: PinService) -> None:
    """Read-only pages: pins, one pin, its related pins and boards, boards, image files."""
    limits = service.limits
    k_query, offset_query = _paging(limits)

    @app.get("/v1/pins", response_model=PinsPage, responses=_ERRORS)
    def list_pins(
        offset: int = Query(0, ge=0, description="first pin (catalog order, added pins last)"),
        limit: int = Query(40, ge=1, le=limits.max_k, description=f"pins, 1..{limits.max_k}"),
    ) -> PinsPage:
        with service.lock:
            total = len(service.index)
            rows = [service.index.pin(r) for r in range(offset, min(offset + limit, total))]
        pins = [_card(row) for row in rows]
        return PinsPage(total=total, offset=offset, pins=pins)

    @app.get("/v1/pins/{pin_id}", response_model=PinDetail, responses=_ERRORS)
    def get_pin(pin_id: str) -> PinDetail:
        pin = service.pin(pin_id)
        return PinDetail(
            **_card(pin).model_dump(),
            description=str(pin["description"] or ""),
            link=str(pin["link"] or ""),
            boards=[BoardRef(**b) for b in pin["boards"]],
        )

    @app.get("/v1/pins/{pin_id}/related", response_model=RelatedResponse, responses=_ERRORS)
    def related(pin_id: str, k: int = k_query, offset: int = offset_query) -> RelatedResponse:
        results = service.related(pin_id, k, offset)
        return RelatedResponse(pin_id=pin_id, offset=offset, results=results)

    @app.get("/v1/boards/{board_id}", response_model=BoardPage, responses=_ERRORS)
    def board(
        board_id: str,
        offset: int = Query(0, ge=0, description="first pin (catalog order)"),
        limit: int = Query(40, ge=1, le=limits.max_k, description=f"pins, 1..{limits.max_k}"),
    ) -> BoardPage:
        page = service.board(board_id, offset, limit)
        return BoardPage(**page | {"pins": [_card(pin) for pin in page["pins"]]})

    @app.get("/v1/pins/{pin_id}/boards", response_model=BoardsResponse, responses=_ERRORS)
    def boards(
        pin_id: str, k: int = Query(5, description=f"boards, 1..{limits.max_k}")
    ) -> BoardsResponse:
        return BoardsResponse(pin_id=pin_id, boards=service.boards(pin_id, k))

    @app.get("/v1/pins/{pin_id}/image", response_class=FileResponse, responses=_FILE)
    def pin_image(pin_id: str) -> FileResponse:
        return FileResponse(service.image_path(pin_id))

    @app.get("/v1/catalog/{path:path}", response_class=FileResponse, responses=_FILE)
    def catalog_file(path: str) -> FileResponse:
        return FileResponse(service.catalog_file(path))


def _add_write_routes(app: FastAPI, service: PinService, metrics: _Metrics) -> None:
    """Add a pin (counted in /metrics) and embed texts/images with the served model."""

    @app.post(
        "/v1/pins",
        status_code=201,
        response_model=AddedPin,
        responses={**_ERRORS, 403: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
    )
    def add_pin(
        file: UploadFile = File(..., description="the pin's image"),
        title: str = Form("", max_length=500),
        description: str = Form("", max_length=5000),
        pin_id: str | None = Form(None),
    ) -> AddedPin:
        added = AddedPin(**service.add_pin(file.file.read(), title, description, pin_id))
        metrics.pins_added.inc()
        return added

    @app.post("/v1/embed", response_model=EmbedResponse, responses=_ERRORS)
    def embed(body: EmbedRequest) -> EmbedResponse:
        """Embed texts and/or images in one batch. Both lists, of the same length, are
        (image, text) pairs and give all three embeddings; one list gives its own."""
        return _embed(service, body)


def _publish_uploads_as_binary(app: FastAPI) -> None:
    """Declare file uploads as `type: string, format: binary` in /openapi.json.

    FastAPI writes OpenAPI 3.1's `contentMediaType: application/octet-stream`, which client
    generators (openapi-python-client) read as a text field: a generated client then posts
    the file object's repr and gets a 422. `format: binary` is what they turn into a file."""
    generate = app.openapi

    def rewrite(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("contentMediaType") == "application/octet-stream":
                del node["contentMediaType"]
                node["format"] = "binary"
            for value in node.values():
                rewrite(value)
        elif isinstance(node, list):
            for value in node:
                rewrite(value)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            rewrite(generate())  # generate() caches the document in app.openapi_schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _card(row) -> PinCard:
    return PinCard(
        pin_id=str(row["pin_id"]),
        title=str(row["title"] or ""),
        image_url=f"/v1/pins/{row['pin_id']}/image",
        source=str(row["source"] or "catalog"),
    )


def _embed(service: PinService, body: EmbedRequest) -> EmbedResponse:
    texts, images = body.texts or [], body.images or []
    if not texts and not images:
        raise ServiceError(422, "send texts, images (base64) or both")
    if texts and images and len(texts) != len(images):
        raise ServiceError(
            422, f"{len(images)} images but {len(texts)} texts: pairs need equal lengths"
        )
    count = max(len(texts), len(images))
    if count > MAX_EMBED_BATCH:
        raise ServiceError(422, f"{count} items > {MAX_EMBED_BATCH} per request; split the batch")
    too_long = [i for i, t in enumerate(texts) if len(t) > service.limits.max_query_chars]
    if too_long:
        raise ServiceError(
            422, f"texts[{too_long[0]}] is over {service.limits.max_query_chars} characters"
        )
    embedder = service.embedder
    pixels = None
    if images:
        decoded = []
        for i, data in enumerate(images):
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise ServiceError(422, f"images[{i}] is not valid base64") from None
            try:
                decoded.append(embedder.preprocess(service.decode_image(raw)))
            except ServiceError as err:
                raise ServiceError(err.status, f"images[{i}]: {err.message}") from None
        pixels = np.stack(decoded).astype(np.float32)
    out: dict[str, np.ndarray] = {}
    if pixels is not None and texts:
        out = embedder.embed_pins(pixels, list(texts))
    elif pixels is not None:
        out = {"image_emb": embedder.embed_images(pixels)}
    else:
        out = {"text_emb": embedder.embed_texts(list(texts))}
    return EmbedResponse(
        count=count,
        dim=int(embedder.config.embed_dim),
        **{k: np.asarray(v, dtype=np.float64).round(7).tolist() for k, v in out.items()},
    )


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
        raise InputError(f"binding {host} exposes the API beyond this machine: pass --api-key")
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
