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


@pytest.mark.parametrize("table", ["pins.parquet", "pin_board.parquet", "boards.parquet"])
def test_catalog_route_serves_images_only(client, service, table):
    # The catalog's tables (who saved what) stay private even though they sit in its folder.
    assert (service.catalog_dir / table).is_file()
    response = client.get(f"/v1/catalog/{table}")
    assert response.status_code == 404 and "images only" in response.json()["detail"]


def test_error_messages_never_carry_server_paths(client, service, tmp_path, monkeypatch):
    # An escaping image path, an undecodable upload and a pin whose image path escapes: each
    # error names the relative file or the pin, never the catalog's or a temp file's location.
    responses = [
        client.get("/v1/catalog/../../etc/passwd.png"),
        client.post("/v1/search/image", files={"file": ("a.png", b"not an image", "image/png")}),
    ]
    row = service.index.rows[service.index.field(5, "pin_id")]
    field = service.index.field
    with monkeypatch.context() as patch:  # that pin's image path escapes the catalog
        patch.setattr(
            service.index, "field",
            lambda r, name: "../../outside.png" if (r, name) == (row, "image") else field(r, name),
        )  # fmt: skip
        responses.append(client.get(f"/v1/pins/{service.index.field(5, 'pin_id')}/image"))
    for response in responses:
        assert 400 <= response.status_code < 500, response.text
        detail = response.json()["detail"]
        for root in (str(service.catalog_dir.resolve()), "/tmp", str(tmp_path.parent)):
            assert root not in detail, detail
        assert ".upload" not in detail


def test_docs_assets_are_served_locally(client):
    # Swagger UI and ReDoc load their scripts and styles from this server, never a CDN.
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css|png))["']""", html)
        assert assets, html
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from another host"
            assert client.get(url).status_code == 200, url


def test_results_page_through_the_ranking(client):
    # Pages of k: page 2 is ranks k..2k of the same ranking, for every kind of query.
    whole = client.get("/v1/search", params={"q": "blue", "k": 20}).json()["results"]
    page2 = client.get("/v1/search", params={"q": "blue", "k": 10, "offset": 10}).json()
    assert page2["offset"] == 10 and page2["results"] == whole[10:]
    pin_id = whole[0]["pin_id"]
    related = client.get(f"/v1/pins/{pin_id}/related", params={"k": 20}).json()["results"]
    again = client.get(f"/v1/pins/{pin_id}/related", params={"k": 5, "offset": 15}).json()
    assert again["results"] == related[15:]
    png = {"file": ("q.png", png_bytes(40, color=(0, 90, 200), seed=2), "image/png")}
    by_image = client.post("/v1/search/image", params={"k": 12}, files=png).json()["results"]
    next_page = client.post("/v1/search/image", params={"k": 6, "offset": 6}, files=png).json()
    assert next_page["results"] == by_image[6:]
    too_deep = client.get("/v1/search", params={"q": "blue", "k": 10, "offset": 995})
    assert too_deep.status_code == 422 and "offset" in too_deep.json()["detail"]


def test_pin_page_has_its_boards_description_and_link(client, service, catalog_dir):
    import pandas as pd

    pins = pd.read_parquet(catalog_dir / "pins.parquet").set_index("pin_id")
    edges = pd.read_parquet(catalog_dir / "pin_board.parquet")
    titles = dict(service.board_titles)
    pin_id = edges["pin_id"].iloc[0]
    body = client.get(f"/v1/pins/{pin_id}").json()
    assert body["description"] == pins.at[pin_id, "description"]
    assert body["link"] == pins.at[pin_id, "link"]
    expected = edges.loc[edges["pin_id"] == pin_id, "board_id"].tolist()
    assert [b["board_id"] for b in body["boards"]] == expected
    assert [b["title"] for b in body["boards"]] == [titles[b] for b in expected]


def test_board_page_lists_its_pins_with_paging(client, catalog_dir):
    import pandas as pd

    edges = pd.read_parquet(catalog_dir / "pin_board.parquet")
    boards = pd.read_parquet(catalog_dir / "boards.parquet").set_index("board_id")
    board_id = edges["board_id"].value_counts().index[0]  # the biggest board
    members = edges.loc[edges["board_id"] == board_id, "pin_id"].tolist()
    body = client.get(f"/v1/boards/{board_id}", params={"limit": 50}).json()
    assert body["title"] == boards.at[board_id, "title"] and body["total"] == len(members)
    assert sorted(p["pin_id"] for p in body["pins"]) == sorted(members)
    half = len(members) // 2
    first = client.get(f"/v1/boards/{board_id}", params={"limit": half}).json()["pins"]
    rest = client.get(f"/v1/boards/{board_id}", params={"offset": half}).json()["pins"]
    assert first + rest == body["pins"]
    missing = client.get("/v1/boards/no-such-board")
    assert missing.status_code == 404 and "unknown board" in missing.json()["detail"]


def test_added_pins_are_found_by_their_own_image_in_exact_order(index_dir, model_dir, tmp_path):
    # Cold start end to end: pins added over HTTP (titled and untitled), each searched by its
    # own image and by its pin (related pins); every added pin of the exact top k (over
    # catalog + added vectors) is in the results, in the exact order.
    import numpy as np

    service = PinService.open(index_dir, model_dir, store_dir=tmp_path, batch_wait_ms=0)
    client = TestClient(create_app(service))
    uploads = [png_bytes(64, color=c, seed=i) for i, c in enumerate(
        [(30, 60, 220), (220, 40, 40), (20, 160, 60), (240, 200, 0), (30, 60, 200), (0, 0, 0)]
    )]  # fmt: skip
    added = []
    for i, data in enumerate(uploads):
        title = "" if i % 2 else f"new pin {i}"
        r = client.post(
            "/v1/pins", files={"file": ("p.png", data, "image/png")}, data={"title": title}
        )
        assert r.status_code == 201, r.text
        added.append(r.json()["pin_id"])
    vectors = np.stack([service.index.vector(r) for r in range(len(service.index))])
    ids = [service.index.field(r, "pin_id") for r in range(len(service.index))]
    k, found = 20, 0
    for pin_id, data in zip(added, uploads, strict=True):
        image = service.embedder.embed_images(
            service.embedder.preprocess(service.decode_image(data))[None]
        )[0]
        pin = service.index.vector(service.index.rows[pin_id])
        by_image = client.post(
            "/v1/search/image", params={"k": k}, files={"file": ("q.png", data, "image/png")}
        ).json()["results"]
        related = client.get(f"/v1/pins/{pin_id}/related", params={"k": k}).json()["results"]
        for query, results in ((image, by_image), (pin, related)):
            ranked = [ids[r] for r in np.argsort(-(vectors @ query), kind="stable")]
            exact = [p for p in ranked if p != pin_id or results is by_image][:k]
            want = [p for p in exact if p in added]
            assert [h["pin_id"] for h in results if h["pin_id"] in added][: len(want)] == want
            found += len(want)
    assert found >= len(added)  # the added pins were among the exact top k
    service.store.close()
