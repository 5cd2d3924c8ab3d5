"""/openapi.json is the client contract: every route declares its responses, and every
response the app actually sends — successes and errors — validates against that schema."""

from __future__ import annotations

import base64
import re

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from pinclip.serve import Limits, PinService, create_app
from pinclip.serve.app import MAX_EMBED_BATCH

from .conftest import png_bytes


@pytest.fixture(scope="module")
def service(index_dir, model_dir, tmp_path_factory):
    return PinService.open(
        index_dir,
        model_dir,
        store_dir=tmp_path_factory.mktemp("store"),
        limits=Limits(max_body_bytes=200_000, max_pixels=250_000, max_k=50),
    )


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


@pytest.fixture(scope="module")
def spec(client):
    return client.get("/openapi.json").json()


def _check(spec: dict, method: str, template: str, response) -> None:
    """Validate one response's status, content type and body against the document."""
    operation = spec["paths"][template][method]
    declared = operation["responses"]
    status = str(response.status_code)
    assert status in declared, f"{method.upper()} {template} sent undeclared {status}"
    content = declared[status].get("content", {})
    media = response.headers["content-type"].split(";")[0]
    if media == "application/json":
        assert "application/json" in content, f"{template} {status}: JSON not declared"
        schema = {**content["application/json"]["schema"], "components": spec["components"]}
        Draft202012Validator(schema).validate(response.json())
    else:
        assert any(re.fullmatch(m.replace("*", ".+"), media) for m in content), (template, media)


def test_every_route_declares_a_response_schema(client, spec):
    routes = {
        (method, path)
        for route in client.app.routes
        if getattr(route, "include_in_schema", False)
        for method in (m.lower() for m in route.methods)
        for path in [re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)]  # {path:path} -> {path}
    }
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok = [s for s in operation["responses"] if s.startswith("2")]
            assert ok, f"{method} {path}: no success response"
            for status in ok:
                content = operation["responses"][status].get("content")
                assert content, f"{method} {path} {status}: no content declared"
                for media, body in content.items():
                    assert body.get("schema"), f"{method} {path} {status} {media}: no schema"
                    assert body["schema"] != {}, f"{method} {path} {status}: empty schema"
            if path.startswith("/v1"):
                assert "404" in operation["responses"] or "422" in operation["responses"]


def test_every_response_validates_against_the_document(client, service, spec):
    pin_id = service.index.meta.at[0, "pin_id"]
    image = service.index.meta.at[3, "image"]
    board_id = service.index.boards["board_id"].iloc[0]
    png = png_bytes(40, color=(30, 200, 90), seed=3)
    b64 = base64.b64encode(png).decode()
    calls = [
        ("get", "/healthz", "/healthz", {}),
        ("get", "/metrics", "/metrics", {}),
        ("get", "/v1/search", "/v1/search", {"params": {"q": "green", "k": 3}}),
        ("get", "/v1/search", "/v1/search", {"params": {"q": "x", "k": 0}}),
        ("get", "/v1/search", "/v1/search", {"params": {"k": "ten"}}),
        ("get", "/v1/search", "/v1/search", {"params": {"q": "green", "k": 3, "offset": 3}}),
        ("get", "/v1/search", "/v1/search", {"params": {"q": "green", "k": 3, "offset": -1}}),
        ("post", "/v1/search", "/v1/search", {"json": {"q": "green", "k": 2}}),
        ("post", "/v1/search", "/v1/search", {"json": {"k": 2}}),
        ("post", "/v1/search/image", "/v1/search/image", {"files": {"file": ("a.png", png)}}),
        ("post", "/v1/search/image", "/v1/search/image", {"files": {"file": ("a", b"no")}}),
        ("get", "/v1/pins", "/v1/pins", {"params": {"limit": 5}}),
        ("get", "/v1/pins", "/v1/pins", {"params": {"limit": 0}}),
        ("get", f"/v1/pins/{pin_id}", "/v1/pins/{pin_id}", {}),
        ("get", "/v1/pins/nope", "/v1/pins/{pin_id}", {}),
        ("get", f"/v1/pins/{pin_id}/related", "/v1/pins/{pin_id}/related", {}),
        ("get", "/v1/pins/nope/related", "/v1/pins/{pin_id}/related", {}),
        ("get", f"/v1/boards/{board_id}", "/v1/boards/{board_id}", {"params": {"limit": 2}}),
        ("get", "/v1/boards/nope", "/v1/boards/{board_id}", {}),
        ("get", f"/v1/pins/{pin_id}/boards", "/v1/pins/{pin_id}/boards", {}),
        ("get", f"/v1/pins/{pin_id}/image", "/v1/pins/{pin_id}/image", {}),
        ("get", "/v1/pins/nope/image", "/v1/pins/{pin_id}/image", {}),
        ("get", f"/v1/catalog/{image}", "/v1/catalog/{path}", {}),
        ("get", "/v1/catalog/../../etc/passwd", "/v1/catalog/{path}", {}),
        ("post", "/v1/pins", "/v1/pins", {"files": {"file": ("n.png", png)}, "data": {"title": "t"}}),
        ("post", "/v1/pins", "/v1/pins", {"data": {"title": "no image"}}),
        ("post", "/v1/embed", "/v1/embed", {"json": {"texts": ["a", "b"], "images": [b64, b64]}}),
        ("post", "/v1/embed", "/v1/embed", {"json": {"texts": ["only text"]}}),
        ("post", "/v1/embed", "/v1/embed", {"json": {"images": ["%%%not base64"]}}),
        ("post", "/v1/embed", "/v1/embed", {"json": {}}),
    ]  # fmt: skip
    seen = set()
    for method, url, template, kwargs in calls:
        response = getattr(client, method)(url, **kwargs)
        _check(spec, method, template, response)
        seen.add((method, template))
        if response.status_code >= 400:
            assert response.json()["detail"], url
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert documented <= seen, f"routes never exercised: {documented - seen}"


def test_embed_returns_the_three_embeddings_batched(client, service):
    png = [png_bytes(40, color=c, seed=i) for i, c in enumerate([(200, 0, 0), (0, 0, 200)])]
    images = [base64.b64encode(p).decode() for p in png]
    texts = ["a red pin", "a blue pin"]
    body = client.post("/v1/embed", json={"texts": texts, "images": images}).json()
    assert body["count"] == 2 and body["dim"] == service.embedder.config.embed_dim
    from io import BytesIO

    import numpy as np
    from PIL import Image

    emb = service.embedder
    pixels = np.stack([emb.preprocess(Image.open(BytesIO(p))) for p in png])
    expected = emb.embed_pins(pixels, texts)
    for key in ("image_emb", "text_emb", "pin_emb"):
        got = np.array(body[key])
        assert got.shape == (2, body["dim"])
        assert np.allclose(got, expected[key], atol=1e-5), key
    only_text = client.post("/v1/embed", json={"texts": texts}).json()
    assert only_text["image_emb"] is None and only_text["pin_emb"] is None
    assert np.allclose(only_text["text_emb"], emb.embed_texts(texts), atol=1e-5)
    mismatch = client.post("/v1/embed", json={"texts": texts, "images": images[:1]})
    assert mismatch.status_code == 422 and "pairs" in mismatch.json()["detail"]
    too_many = client.post("/v1/embed", json={"texts": ["x"] * (MAX_EMBED_BATCH + 1)})
    assert too_many.status_code == 422 and "split the batch" in too_many.json()["detail"]


def _samples(text: str, name: str) -> dict[str, float]:
    """Prometheus text exposition -> {labels: value} of one metric."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_metrics_count_requests_latency_index_size_and_added_pins(service, index_dir, model_dir):
    client = TestClient(create_app(service))  # a fresh app: its own counters
    before = len(service.index)
    for _ in range(3):
        assert client.get("/v1/search", params={"q": "red", "k": 2}).status_code == 200
    assert client.get("/v1/pins/nope/related").status_code == 404
    files = {"file": ("m.png", png_bytes(40, color=(5, 5, 250), seed=11))}
    assert client.post("/v1/pins", files=files).status_code == 201
    text = client.get("/metrics").text
    requests = _samples(text, "pinclip_http_requests_total")
    search = 'pinclip_http_requests_total{method="GET",route="/v1/search",status="200"}'
    assert requests[search] == 3
    assert (
        requests[
            'pinclip_http_requests_total{method="GET",route="/v1/pins/{pin_id}/related",status="404"}'
        ]
        == 1
    )
    latency = _samples(text, "pinclip_http_request_duration_seconds_count")
    assert latency['pinclip_http_request_duration_seconds_count{route="/v1/search"}'] == 3
    assert _samples(text, "pinclip_index_pins")["pinclip_index_pins"] == before + 1
    assert _samples(text, "pinclip_pins_added_total")["pinclip_pins_added_total"] == 1
