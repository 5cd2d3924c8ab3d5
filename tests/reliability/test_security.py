"""Hostile input against a live server: every case is refused with a 4xx, none leaks or crashes.

One `pinclip serve` process with an API key (from the environment, as deployments pass it)
and a store; its whole stdout/stderr is captured and searched for the key at the end.
Raw HTTP is sent over a socket where a client library would normalise the attack away.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import zlib
from pathlib import Path

import httpx
import pandas as pd
import pytest

from pinclip.serve.app import is_loopback, run

from .conftest import CATALOG_PINS, Server, png_bytes, record

KEY = "pk-reliability-7f3a9c2e41"
AUTH = {"X-API-Key": KEY}
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module")
def server(index_dir, model_dir, tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("security")
    index = Path(shutil.copytree(index_dir, root / "index"))
    meta = pd.read_parquet(index / "meta.parquet")  # two pins whose image paths try to escape
    meta.loc[0, "image"] = "../../../../../../etc/passwd"
    meta.loc[1, "image"] = "/etc/passwd"
    meta.to_parquet(index / "meta.parquet", index=False)
    server = Server(index, model_dir, root / "server.log", api_key=KEY).start()
    server.escaping_pins = meta.loc[:1, "pin_id"].tolist()
    yield server
    server.stop()
    log = server.log.read_text(errors="replace")
    assert KEY not in log, "the API key was written to the server log"
    record("security", bad_inputs_tried=sum(TRIED.values()), by_kind=dict(TRIED), key_in_log=False)


def _tried(kind: str, n: int = 1) -> None:
    TRIED[kind] = TRIED.get(kind, 0) + n


def raw(server: Server, request: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Send bytes as they are; return (status, whole response)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        # the server may answer and close before reading everything: fine
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(request)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    data = b"".join(chunks)
    return int(data.split(b" ", 2)[1]), data


def get_raw(server: Server, target: str) -> tuple[int, bytes]:
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nConnection: close\r\n\r\n"
    return raw(server, head.encode())


TRAVERSALS = [
    "/v1/catalog/../../etc/passwd",
    "/v1/catalog/../../../../../../etc/passwd",
    "/v1/catalog/%2e%2e/%2e%2e/etc/passwd",
    "/v1/catalog/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/v1/catalog/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/v1/catalog/%252e%252e/%252e%252e/etc/passwd",
    "/v1/catalog/..%5c..%5c..%5cetc%5cpasswd",
    "/v1/catalog//etc/passwd",
    "/v1/catalog/%2fetc%2fpasswd",
    "/v1/catalog/images/%00/../../../etc/passwd",
    "/v1/catalog/....//....//....//etc/passwd",
    "/v1/catalog/images/../../../../etc/passwd",
    "/v1/pins/..%2f..%2f..%2fetc%2fpasswd/image",
    "/v1/pins/%2e%2e/image",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_path_traversal_in_urls_is_refused(server, target):
    status, response = get_raw(server, target)
    _tried("path traversal (URL)")
    assert 400 <= status < 500, response[:300]
    assert b"root:" not in response


def test_escaping_image_paths_in_the_index_are_refused(server):
    for pin_id in server.escaping_pins:
        r = httpx.get(f"{server.url}/v1/pins/{pin_id}/image", headers=AUTH)
        _tried("path traversal (image path)")
        detail = r.json()["detail"]
        assert r.status_code == 404 and "escapes catalog" in detail, r.text
        assert "/" not in detail, detail  # names the pin, never a server path
        assert "root:" not in r.text
    bad_id = httpx.post(
        f"{server.url}/v1/pins",
        headers=AUTH,
        files={"file": ("a.png", png_bytes(), "image/png")},
        data={"pin_id": "../../escape"},
    )
    _tried("path traversal (image path)")
    assert bad_id.status_code == 422


def _chunked(path: str, body_chunks, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in body_chunks) + b"0\r\n\r\n"
    return head + body


def test_oversized_bodies_are_refused(server):
    big = b"\x00" * (9 * 1024 * 1024)  # the server's default limit is 8 MiB
    r = httpx.post(
        f"{server.url}/v1/pins", headers=AUTH, files={"file": ("big.png", big, "image/png")}
    )
    assert r.status_code == 413, r.text
    r = httpx.post(
        f"{server.url}/v1/search",
        headers={**AUTH, "content-type": "application/json"},
        content=b'{"q": "' + b"a" * len(big) + b'"}',
    )
    assert r.status_code == 413, r.text
    # Without Content-Length (chunked), the limit must hold while the body streams in.
    json_body = [b'{"q": "'] + [b"a" * 65536] * 144 + [b'"}']
    status, response = raw(server, _chunked("/v1/search", json_body, "application/json"))
    assert status == 413, response[:300]
    boundary = "b0undary"
    multipart = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
    ] + [b"\x89PNG" + b"\x00" * 65532] * 144
    status, response = raw(
        server, _chunked("/v1/pins", multipart, f"multipart/form-data; boundary={boundary}")
    )
    assert status == 413, response[:300]
    bad_length = (
        f"POST /v1/search HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Length: -5\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, _ = raw(server, bad_length)
    assert 400 <= status < 500
    _tried("oversized or lying body", 5)
    assert server.health()["pins"] == CATALOG_PINS


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def zero_png(width: int, height: int) -> bytes:
    """A real, fully valid all-black PNG: tiny on the wire, huge when decoded."""
    row = b"\x00" + b"\x00" * width  # filter byte + one grey byte per pixel
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize(
    "bomb",
    [png_header_only(100_000, 100_000), png_header_only(2**31 - 1, 1), zero_png(5000, 5000)],
    ids=["100kx100k-header", "2^31x1-header", "5000x5000-real"],
)
@pytest.mark.parametrize("endpoint", ["/v1/search/image", "/v1/pins"])
def test_decompression_bombs_are_refused_in_bounded_memory(server, bomb, endpoint):
    before = _rss_mb(server.proc.pid)
    r = httpx.post(
        f"{server.url}{endpoint}",
        headers=AUTH,
        files={"file": ("bomb.png", bomb, "image/png")},
        timeout=60,
    )
    _tried("decompression bomb")
    assert r.status_code == 413 and "pixel" in r.json()["detail"], r.text
    grown = _rss_mb(server.proc.pid) - before
    assert grown < 100, f"server memory grew {grown:.0f} MB on a refused bomb"


def _multipart(body: bytes, content_type: str) -> bytes:
    head = (
        f"POST /v1/pins HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


PNG = png_bytes()
MALFORMED = {
    "no boundary": (b"--x\r\n\r\n", "multipart/form-data"),
    "wrong boundary": (
        b'--other\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        + PNG
        + b"\r\n--other--\r\n",
        "multipart/form-data; boundary=expected",
    ),
    "truncated": (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + PNG[:40],
        "multipart/form-data; boundary=b",
    ),
    "garbage": (bytes(range(256)) * 8, "multipart/form-data; boundary=b"),
    "no disposition": (
        b"--b\r\nContent-Type: image/png\r\n\r\n" + PNG + b"\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    ),  # fmt: skip
    "file as text field": (
        b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nhello\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    "too many fields": (
        b"".join(
            b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
            for i in range(1500)
        )
        + b"--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
    "not multipart": (PNG, "image/png"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_multipart_is_a_4xx(server, case):
    body, content_type = MALFORMED[case]
    status, response = raw(server, _multipart(body, content_type))
    _tried("malformed multipart")
    assert 400 <= status < 500, response[:400]
    assert b'"detail"' in response
    assert server.health()["pins"] == CATALOG_PINS


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY[:-1]},
     {"X-API-Key": KEY + "x"}, {"X-API-Key": KEY.upper()}, {"Authorization": f"Bearer {KEY}"}],
    ids=["none", "empty", "wrong", "prefix", "longer", "case", "bearer"],
)  # fmt: skip
def test_missing_or_wrong_api_key_is_401(server, headers):
    for method, path, kwargs in [
        ("get", "/v1/search", {"params": {"q": "red"}}),
        ("get", f"/v1/pins/{server.escaping_pins[1]}/related", {}),
        ("post", "/v1/pins", {"files": {"file": ("a.png", PNG, "image/png")}}),
        ("get", "/v1/catalog/catalog.json", {}),
    ]:
        r = getattr(httpx, method)(f"{server.url}{path}", headers=headers, **kwargs)
        _tried("wrong API key")
        assert r.status_code == 401, (path, r.text)
        assert KEY not in r.text
    assert server.health()["pins"] == CATALOG_PINS  # the unauthenticated add did nothing


def test_right_key_works_and_is_never_logged(server):
    pin = server.escaping_pins[1]
    assert (
        httpx.get(f"{server.url}/v1/search", params={"q": "red"}, headers=AUTH).status_code == 200
    )
    # `?api_key=` is how <img> tags authenticate: the access log must not print it.
    r = httpx.get(f"{server.url}/v1/pins/{pin}/related", params={"api_key": KEY, "k": 2})
    assert r.status_code == 200
    r = httpx.get(f"{server.url}/v1/search", params={"q": "x", "k": 0, "api_key": KEY})
    assert r.status_code == 422 and KEY not in r.text
    log = server.log.read_text(errors="replace")
    assert "/v1/search" in log, "the access log is on (so the check below means something)"
    assert KEY not in log


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com", ""])
def test_non_loopback_bind_without_key_is_refused(host):
    _tried("public bind without key")
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="--api-key"):
        run(None, host=host, port=1)  # type: ignore[arg-type]  # refused before the service is used


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_binds_need_no_key(host):
    assert is_loopback(host)
