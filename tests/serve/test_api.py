"""The HTTP API contract, its limits and error responses, adding pins, the API key."""

from __future__ import annotations

import io
import shutil

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pinclip.serve import Limits, PinService, create_app

from .conftest import png_bytes


@pytest.fixture(scope="module")
def service(index_dir, model_dir, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return PinService.open(
        index_dir,
        model_dir,
        store_dir=store,
        limits=Limits(max_body_bytes=200_000, max_pixels=250_000, max_k=50),
    )


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


def test_health_docs_and_page(client):
    assert client.get("/healthz").json()["pins"] >= 96
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/search",
        "/v1/search/image",
        "/v1/pins/{pin_id}/related",
        "/v1/pins/{pin_id}/boards",
        "/v1/pins",
    ):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<input" in page.text


def test_text_search_contract(client, service):
    body = client.get("/v1/search", params={"q": "red", "k": 5}).json()
    assert len(body["results"]) == 5
    first = body["results"][0]
    assert set(first) == {"pin_id", "title", "score", "image_url"}
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    image = client.get(first["image_url"])
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size[0] > 0
    assert client.post("/v1/search", json={"q": "red", "k": 5}).json()["results"] == body["results"]


def test_related_boards_and_image_search(client, service):
    pin_id = service.index.meta.at[0, "pin_id"]
    related = client.get(f"/v1/pins/{pin_id}/related", params={"k": 7}).json()["results"]
    assert len(related) == 7 and pin_id not in {r["pin_id"] for r in related}
    boards = client.get(f"/v1/pins/{pin_id}/boards", params={"k": 3}).json()["boards"]
    assert 1 <= len(boards) <= 3 and all(b["board_id"] for b in boards)
    assert abs(sum(b["score"] for b in boards)) <= 1.0 + 1e-6
    files = {"file": ("q.png", png_bytes(), "image/png")}
    assert len(client.post("/v1/search/image", files=files, params={"k": 4}).json()["results"]) == 4


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        (
            "post",
            "/v1/search",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
        ),
        ("get", "/v1/search", {"params": {"q": "x", "k": 0}}, 422),
        ("get", "/v1/search", {"params": {"q": "x", "k": 51}}, 422),
        ("get", "/v1/search", {"params": {"q": "x", "k": "ten"}}, 422),
        ("get", "/v1/search", {"params": {"q": "  "}}, 422),
        ("get", "/v1/pins/no-such-pin/related", {}, 404),
        ("get", "/v1/pins/no-such-pin/boards", {}, 404),
        ("get", "/v1/pins/no-such-pin/image", {}, 404),
        (
            "post",
            "/v1/search/image",
            {"files": {"file": ("a.txt", b"hello, not an image", "text/plain")}},
            400,
        ),
        (
            "post",
            "/v1/search/image",
            {"files": {"file": ("big.png", png_bytes(600), "image/png")}},
            413,
        ),
        ("post", "/v1/pins", {"files": {"file": ("x.bin", b"\x00" * 300_000, "image/png")}}, 413),
        ("post", "/v1/pins", {"data": {"title": "no image"}}, 422),
        ("get", "/v1/catalog/../../etc/passwd", {}, 404),
        ("get", "/v1/catalog/%2e%2e/%2e%2e/etc/passwd", {}, 404),
    ],
)
def test_bad_requests_get_4xx_json(client, method, url, kwargs, status):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]  # FastAPI's error shape
    assert detail and (isinstance(detail, str) or all("msg" in e for e in detail))


def test_catalog_files_are_served_inside_the_catalog(client, service):
    image = service.index.meta.at[3, "image"]
    assert client.get(f"/v1/catalog/{image}").status_code == 200


def test_add_pin_then_search_finds_it(client, service):
    data = png_bytes(40, color=(10, 200, 240), seed=7)
    response = client.post(
        "/v1/pins",
        files={"file": ("new.png", data, "image/png")},
        data={"title": "a brand new turquoise pin", "pin_id": "added-1"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["pin_id"] == "added-1"
    # Searchable at once: the same pin's embedding finds it first (the tiny model is untrained,
    # so cross-modal queries are not meaningful here).
    emb = service.embedder
    query = emb.embed_pins(
        emb.preprocess(Image.open(io.BytesIO(data)))[None], ["a brand new turquoise pin"]
    )
    top = service._results(query["pin_emb"][0], 1)
    assert top[0]["pin_id"] == "added-1" and top[0]["score"] > 0.999
    assert client.get("/v1/pins/added-1/related", params={"k": 3}).status_code == 200
    assert client.get("/v1/pins/added-1/boards").json()[
        "boards"
    ]  # cold start: boards of neighbours
    assert client.get("/v1/pins/added-1/image").content == data
    again = client.post(
        "/v1/pins", files={"file": ("new.png", data, "image/png")}, data={"pin_id": "added-1"}
    )
    assert again.status_code == 409
    bad_id = client.post(
        "/v1/pins", files={"file": ("new.png", data, "image/png")}, data={"pin_id": "../x"}
    )
    assert bad_id.status_code == 422


def test_api_key(service):
    client = TestClient(create_app(service, api_key="s3cret"))
    assert client.get("/v1/search", params={"q": "red"}).status_code == 401
    assert (
        client.get("/v1/search", params={"q": "red"}, headers={"X-API-Key": "wrong"}).status_code
        == 401
    )
    assert (
        client.get("/v1/search", params={"q": "red"}, headers={"X-API-Key": "s3cret"}).status_code
        == 200
    )
    assert client.get("/healthz").status_code == 200


def test_refuses_public_bind_without_key(index_dir, model_dir):
    from typer.testing import CliRunner

    from pinclip.cli import app

    result = CliRunner().invoke(
        app, ["serve", "--index", str(index_dir), "--model", str(model_dir), "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2 and "--api-key" in result.output


def test_embed_missing_catalog_is_a_clear_error(model_dir, tmp_path):
    from typer.testing import CliRunner

    from pinclip.cli import app

    missing = tmp_path / "no-catalog"
    result = CliRunner().invoke(app, ["embed", str(model_dir), str(missing), str(tmp_path / "e")])
    assert result.exit_code == 2
    assert "no such catalog directory" in " ".join(result.output.split())  # Rich wraps lines


def test_index_copy_dims_must_match(index_dir, tmp_path):
    from pinclip.model import PinCLIP

    other = PinCLIP.from_preset(
        "tiny", pretrained=False, **{"embed_dim": 16, "matryoshka_dims": [8, 16]}
    ).save_pretrained(tmp_path / "m")
    shutil.copytree(index_dir, tmp_path / "idx")
    with pytest.raises(ValueError, match="dims"):
        PinService.open(tmp_path / "idx", other)
