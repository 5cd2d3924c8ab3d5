"""Pins added over HTTP survive `kill -9` of the server right after their 201s."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import png_bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(index_dir, model_dir, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "pinclip",
        "serve",
        "--index",
        str(index_dir),
        "--model",
        str(model_dir),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("server did not become healthy in 60 s")


def test_kill_9_after_201_loses_nothing(tmp_path, index_dir, model_dir):
    index = tmp_path / "index"
    shutil.copytree(index_dir, index)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(index, model_dir, port)
    try:
        added = []
        for i in range(3):
            r = httpx.post(
                f"{url}/v1/pins",
                files={"file": (f"{i}.png", png_bytes(seed=i), "image/png")},
                data={"title": f"durable pin {i}"},
                timeout=30,
            )
            assert r.status_code == 201, r.text
            added.append(r.json()["pin_id"])
        assert httpx.get(f"{url}/healthz").json()["pins"] == 99
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hooks, no flushing
        proc.wait()
    proc = _start(index, model_dir, port)
    try:
        health = httpx.get(f"{url}/healthz").json()
        assert health["pins"] == 99 and health["replayed"] == 3
        for pin_id in added:
            assert httpx.get(f"{url}/v1/pins/{pin_id}/related", params={"k": 3}).status_code == 200
            assert httpx.get(f"{url}/v1/pins/{pin_id}/image").content == png_bytes(
                seed=added.index(pin_id)
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_torn_log_tail_is_ignored(tmp_path):
    import numpy as np

    from pinclip.serve.store import AddedPin, PinStore

    store = PinStore(tmp_path)
    store.append(AddedPin("a", "t", "t", "a.png", np.ones(4, np.float32)))
    with open(store.log, "a") as f:
        f.write('{"pin_id": "b", "tit')  # killed mid-write: never acknowledged
    assert [p.pin_id for p in store.replay()] == ["a"]


def test_store_fsyncs_its_folders_with_the_one_atomic_helper(tmp_path, monkeypatch):
    # One fsync_dir in the project (pinclip.atomic): the store's image folder after each
    # image, its root when the log is created.
    import numpy as np

    from pinclip import atomic
    from pinclip.serve import store as store_module

    synced: list = []
    assert store_module.fsync_dir is atomic.fsync_dir
    monkeypatch.setattr(store_module, "fsync_dir", synced.append)
    store = store_module.PinStore(tmp_path)
    store.save_image("a.png", png_bytes())
    store.append(store_module.AddedPin("a", "", "", "a.png", np.ones(4, np.float32)))
    store.close()
    assert synced == [tmp_path / "images", tmp_path]
