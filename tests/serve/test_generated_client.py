"""A Python client generated from /openapi.json by openapi-python-client uploads files.

The schema must declare uploads as `format: binary`: with OpenAPI 3.1's
`contentMediaType` the generator types the file as a string and the client posts its repr
(422 "Expected UploadFile"). The client is generated offline from the app's document, then
adds a pin, searches by image and reads the pin back through the generated functions.
"""

from __future__ import annotations

import importlib
import io
import json
import sys

import pytest
from fastapi.testclient import TestClient

from pinclip.serve import PinService, create_app

from .conftest import png_bytes


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from openapi_python_client import generate
    from openapi_python_client.config import Config, ConfigFile, MetaType

    root = tmp_path_factory.mktemp("client")
    return root, generate, Config, ConfigFile, MetaType


@pytest.mark.slow
def test_generated_client_adds_a_pin_and_searches_by_image(
    generated, index_dir, model_dir, tmp_path
):
    root, generate, Config, ConfigFile, MetaType = generated
    service = PinService.open(index_dir, model_dir, store_dir=tmp_path / "store")
    app = create_app(service)
    spec = root / "openapi.json"
    spec.write_text(json.dumps(TestClient(app).get("/openapi.json").json()))
    config = Config.from_sources(
        ConfigFile(post_hooks=[]),  # no formatter run: nothing outside the suite is needed
        MetaType.NONE,
        spec,
        "utf-8",
        overwrite=True,
        output_path=root / "pinclip_client",
    )
    errors = generate(config=config)
    assert not [e for e in errors if getattr(e, "level", None) == "ERROR"], errors
    sys.path.insert(0, str(root))
    try:
        client_module = importlib.import_module("pinclip_client")
        add = importlib.import_module("pinclip_client.api.default.add_pin_v1_pins_post")
        search = importlib.import_module(
            "pinclip_client.api.default.search_image_v1_search_image_post"
        )
        get_pin = importlib.import_module("pinclip_client.api.default.get_pin_v1_pins_pin_id_get")
        models = importlib.import_module("pinclip_client.models")
        types = importlib.import_module("pinclip_client.types")
    finally:
        sys.path.remove(str(root))
    client = client_module.Client(base_url="http://testserver")
    client.set_httpx_client(TestClient(app))  # a TestClient is an httpx.Client

    data = png_bytes(48, color=(20, 40, 230), seed=9)

    def upload() -> object:
        return types.File(payload=io.BytesIO(data), file_name="blue.png", mime_type="image/png")

    response = add.sync_detailed(
        client=client,
        body=models.BodyAddPinV1PinsPost(file=upload(), title="a generated-client pin"),
    )
    assert response.status_code == 201, response.content
    pin_id = response.parsed.pin_id
    pin = get_pin.sync(pin_id, client=client)
    assert pin.title == "a generated-client pin" and pin.source == "added"
    found = search.sync(
        client=client, body=models.BodySearchImageV1SearchImagePost(file=upload()), k=10
    )
    expected = service.search_image(data, 10)  # the same query, straight through the service
    assert [r.pin_id for r in found.results] == [r["pin_id"] for r in expected]
    assert [r.score for r in found.results] == [r["score"] for r in expected]
    service.store.close()


def test_uploads_are_published_as_binary(index_dir, model_dir, tmp_path):
    service = PinService.open(index_dir, model_dir, store_dir=tmp_path / "store")
    spec = TestClient(create_app(service)).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    uploads = [
        body["properties"]["file"]
        for name, body in schemas.items()
        if name.startswith("Body_") and "file" in body["properties"]
    ]
    assert len(uploads) == 2  # add a pin, search by image
    for field in uploads:
        assert field["type"] == "string" and field["format"] == "binary"
        assert "contentMediaType" not in field
    service.store.close()
