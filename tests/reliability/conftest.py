"""Shared pieces for the reliability tests: a tiny served catalog, a real server process, figures.

Every number a test measures goes into `figures` (printed at the end of the session, and
written as JSON to $PINCLIP_RELIABILITY_FIGURES when set: `make soak` does), so RELIABILITY.md
quotes runs, not hopes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pinclip.data.builders.synthetic import build_synthetic_catalog
from pinclip.model import PinCLIP
from pinclip.serve import build_index, embed_catalog

CATALOG_PINS = 96
FIGURES: dict[str, dict] = {}


def record(test: str, **numbers: object) -> None:
    """Keep a test's measured figures for the end-of-session summary."""
    FIGURES.setdefault(test, {}).update(numbers)


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for test, numbers in FIGURES.items():
        terminalreporter.write_line(f"{test}: {json.dumps(numbers, sort_keys=True)}")
    out = os.environ.get("PINCLIP_RELIABILITY_FIGURES")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def rel_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="session")
def catalog_dir(rel_root) -> Path:
    root = rel_root / "catalog"
    build_synthetic_catalog(root, pins=CATALOG_PINS, seed=0, size=32, progress=False)
    return root


@pytest.fixture(scope="session")
def model_dir(rel_root) -> Path:
    return PinCLIP.from_preset("tiny", pretrained=False, seed=0).save_pretrained(rel_root / "model")


@pytest.fixture(scope="session")
def index_dir(rel_root, model_dir, catalog_dir) -> Path:
    emb = embed_catalog(model_dir, catalog_dir, rel_root / "emb", batch_size=32, part_size=48)
    out = rel_root / "index"
    build_index(emb, out, catalog_dir=catalog_dir)
    return out


@pytest.fixture
def fresh_index(index_dir, tmp_path) -> Path:
    """A private copy of the index (its `added/` store starts empty)."""
    return Path(shutil.copytree(index_dir, tmp_path / "index"))


def png_bytes(size: int = 24, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pinclip serve` in a subprocess on 127.0.0.1; stdout+stderr go to `log`."""

    def __init__(self, index: Path, model: Path, log: Path, *, api_key: str | None = None):
        self.index, self.model, self.log, self.api_key = index, model, log, api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def command(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pinclip",
            "serve",
            "--index",
            str(self.index),
            "--model",
            str(self.model),
            "--port",
            str(self.port),
            *extra,
        ]

    def env(self) -> dict[str, str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        if self.api_key:
            env["PINCLIP_API_KEY"] = self.api_key  # not argv: argv is visible in `ps`
        return env

    def start(self, timeout: float = 90) -> Server:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env()
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.kill9()
        pytest.fail(f"server not healthy in {timeout} s: {self.log.read_text()[-2000:]}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/healthz", timeout=10).json()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.fixture
def server_factory(model_dir, tmp_path):
    """Start servers for a test; every one still running at its end is stopped."""
    started: list[Server] = []

    def make(index: Path, *, api_key: str | None = None, name: str = "server") -> Server:
        server = Server(index, model_dir, tmp_path / f"{name}-{len(started)}.log", api_key=api_key)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
