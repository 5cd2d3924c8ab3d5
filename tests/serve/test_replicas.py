"""More than one server process over one index: a writer and a read-only replica (another
process) that picks up the pins the writer adds; micro-batching of query forwards."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pinclip.serve import PinService, create_app
from pinclip.serve.service import MicroBatcher
from pinclip.serve.store import AddedPin, PinStore

from .conftest import png_bytes
from .test_durability import _free_port


@pytest.mark.slow
def test_replica_process_follows_the_writer(tmp_path, index_dir, model_dir):
    index = shutil.copytree(index_dir, tmp_path / "index")
    writer = PinService.open(index, model_dir)  # this process holds the store's lock
    client = TestClient(create_app(writer))
    port = _free_port()
    cmd = [sys.executable, "-m", "pinclip", "serve", "--index", str(index), "--model",
           str(model_dir), "--port", str(port), "--read-only", "--refresh-seconds", "0.2"]  # fmt: skip
    replica = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert replica.poll() is None, replica.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "replica did not start"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        r = client.post("/v1/pins", files={"file": ("a.png", png_bytes(seed=5))},
                        data={"title": "added on the writer", "pin_id": "w-1"})  # fmt: skip
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/v1/pins/w-1/related?k=3").status_code != 200:
            assert time.monotonic() < deadline, "the replica never saw the added pin"
            time.sleep(0.2)
        # The replica serves it like any pin (its image too), and refuses writes.
        assert httpx.get(f"{base}/v1/pins/w-1/image").status_code == 200
        assert httpx.get(f"{base}/healthz").json()["pins"] == len(writer.index)
        refused = httpx.post(f"{base}/v1/pins", files={"file": ("b.png", png_bytes(seed=6))})
        assert refused.status_code == 403 and "read-only" in refused.text
    finally:
        replica.terminate()
        replica.wait(timeout=30)
        writer.store.close()


def test_replica_reads_only_complete_lines_and_writer_cuts_a_torn_tail(tmp_path):
    writer = PinStore(tmp_path)
    reader = PinStore(tmp_path, read_only=True)
    vec = np.ones(4, np.float32)
    writer.append(AddedPin("a", "", "", "a.png", vec))
    assert [p.pin_id for p in reader.replay()] == ["a"]
    with open(writer.log, "a") as f:
        f.write('{"pin_id": "half')  # a write in progress (or killed)
    assert list(reader.follow()) == []  # not complete: not read
    writer.close()
    writer = PinStore(tmp_path)  # a restarted writer drops the torn tail...
    writer.append(AddedPin("b", "", "", "b.png", vec))  # ...so this starts its own line
    assert [p.pin_id for p in reader.follow()] == ["b"]
    assert [p.pin_id for p in PinStore(tmp_path, read_only=True).replay()] == ["a", "b"]
    writer.close()


def test_micro_batcher_runs_queued_calls_as_one_forward():
    release, started = threading.Event(), threading.Event()
    sizes: list[int] = []

    def forward(items: list) -> np.ndarray:
        sizes.append(len(items))
        started.set()
        release.wait(10)
        return np.array([[x * 2.0] for x in items])

    batcher = MicroBatcher(forward, max_batch=4, wait_s=0.0)
    results: dict[int, float] = {}

    def call(x: int) -> None:
        results[x] = float(batcher(x)[0])

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert started.wait(10)  # the first forward is running alone...
    threads += [threading.Thread(target=call, args=(x,)) for x in range(1, 7)]
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 10
    while batcher.queue.qsize() < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()  # ...and the six that queued meanwhile run as batches of <= 4
    for t in threads:
        t.join(10)
    assert results == {x: 2.0 * x for x in range(7)}
    assert sizes == [1, 4, 2]


def test_batched_queries_equal_one_at_a_time(index_dir, model_dir, tmp_path):
    service = PinService.open(index_dir, model_dir, store_dir=tmp_path, batch_wait_ms=5)
    queries = ["red heart", "a cat", "blue car on a road", "x"]
    direct = [service.embedder.embed_texts([q])[0] for q in queries]
    got: dict[str, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda q=q: got.__setitem__(q, service._embed_texts(q)))
        for q in queries
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for q, ref in zip(queries, direct, strict=True):
        np.testing.assert_allclose(got[q], ref, atol=1e-5)  # padding in a batch changes nothing
    assert service.search_text("red heart", 3)[0]["pin_id"]
    service.store.close()


def test_torn_tail_longer_than_the_read_window_is_cut(tmp_path):
    from pinclip.serve.store import _cut_torn_tail

    log = tmp_path / "pins.jsonl"
    log.write_bytes(b'{"a": 1}\n' + b"x" * 100)  # a torn record longer than the window
    _cut_torn_tail(log, window=16)
    assert log.read_bytes() == b'{"a": 1}\n'
    log.write_bytes(b"y" * 50)  # nothing complete at all
    _cut_torn_tail(log, window=16)
    assert log.read_bytes() == b""


def test_replica_refresh_failures_are_logged_counted_and_backed_off(
    tmp_path, index_dir, model_dir, caplog
):
    from pinclip.serve.service import MAX_BACKOFF_S, backoff_s

    writer = PinStore(tmp_path)  # a writer's log that the replica follows
    looks: list[float] = []

    def broken_follow():
        looks.append(time.monotonic())
        raise OSError("disk went away")

    with caplog.at_level("WARNING", logger="pinclip.serve.service"):
        replica = PinService.open(
            index_dir, model_dir, store_dir=tmp_path, read_only=True, refresh_s=0.02
        )
        replica.store.follow = broken_follow
        time.sleep(1.2)
    # 0.02 s apart without back-off would be ~60 looks; doubling waits allow ~6.
    assert 3 <= len(looks) <= 8, len(looks)
    assert all(b - a >= 0.9 * 0.02 * 2**i for i, (a, b) in enumerate(itertools.pairwise(looks)))
    assert replica.follow_errors >= 3
    assert any("disk went away" in r.getMessage() for r in caplog.records)
    metrics = TestClient(create_app(replica)).get("/metrics").text
    assert f"pinclip_replica_refresh_errors_total {float(replica.follow_errors)}" in metrics
    assert backoff_s(1.0, 0) == 1.0 and backoff_s(1.0, 3) == 8.0
    assert backoff_s(1.0, 40) == MAX_BACKOFF_S
    writer.close()
