"""The server under load, two writers and kill -9: no 5xx, no acknowledged pin ever lost.

A real `pinclip serve` process on 127.0.0.1 (tiny model, 96-pin synthetic catalog). Two load
processes (two independent writers, 16 connections each = concurrency 32) mix text search,
related pins, board suggestions and pin additions; meanwhile a second server on the same
index directory must refuse to start. Then the server is SIGKILLed mid-load and restarted:
every acknowledged pin must be back and the index must hold exactly the logged pins.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pandas as pd
import pytest

from .conftest import CATALOG_PINS, record

LOAD = Path(__file__).with_name("load.py")


def _load(url: str, out: Path, seconds: float, concurrency: int, pins: list[str], seed: int):
    cmd = [sys.executable, str(LOAD), url, "--seconds", str(seconds), "--concurrency",
           str(concurrency), "--pins", ",".join(pins), "--seed", str(seed), "--prefix", f"w{seed}",
           "--out", str(out)]  # fmt: skip
    return subprocess.Popen(cmd)


def _finish(proc: subprocess.Popen, out: Path, timeout: float) -> dict:
    assert proc.wait(timeout=timeout) == 0, "load generator failed"
    return json.loads(out.read_text())


async def _findable(url: str, pin_ids: list[str]) -> dict[str, int]:
    """Status of GET related + GET image for every pin (8 at a time); 200 means findable."""
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def check(pin_id: str) -> tuple[str, int]:
            async with gate:
                related = await client.get(f"/v1/pins/{pin_id}/related", params={"k": 3})
                image = await client.get(f"/v1/pins/{pin_id}/image")
                return pin_id, max(related.status_code, image.status_code)

        return dict(await asyncio.gather(*(check(p) for p in pin_ids)))


def _logged_pins(index: Path) -> list[str]:
    lines = (index / "added" / "pins.jsonl").read_text().splitlines()
    return [json.loads(line)["pin_id"] for line in lines]  # every line parses: no torn writes


@pytest.mark.parametrize(
    ("seconds", "kills"),
    [
        pytest.param(5, 1, id="fast-5s"),
        pytest.param(60, 3, id="soak-60s", marks=pytest.mark.soak),
    ],
)
def test_load_two_writers_and_kill9(
    seconds, kills, fresh_index, index_dir, server_factory, tmp_path
):
    catalog_pins = pd.read_parquet(index_dir / "meta.parquet")["pin_id"].tolist()
    server = server_factory(fresh_index).start()

    # Phase 1: 60 s (fast: 5 s) at concurrency 32 from two writer processes.
    outs = [tmp_path / "load-a.json", tmp_path / "load-b.json"]
    procs = [
        _load(server.url, out, seconds, 16, catalog_pins, seed) for seed, out in enumerate(outs)
    ]
    # ...while a second server on the same store must refuse to start.
    second = server_factory(fresh_index, name="second")
    refused = subprocess.run(
        second.command(), capture_output=True, text=True, env=second.env(), timeout=120
    )
    phase1 = [_finish(p, out, seconds + 120) for p, out in zip(procs, outs, strict=True)]
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "in use by another server" in refused.stderr

    acked = [pin for r in phase1 for pin in r["acked"]]
    served = sum(r["responses"] for r in phase1)
    errors = {
        k: v for r in phase1 for k, v in r["counts"].items() if not k.endswith((" 200", " 201"))
    }
    assert sum(r["server_errors"] for r in phase1) == 0, errors
    assert not errors, f"unexpected responses under load: {errors}"
    assert acked and served > 0
    assert server.health()["pins"] == CATALOG_PINS + len(acked)
    status = asyncio.run(_findable(server.url, acked))
    assert all(code == 200 for code in status.values()), {
        p: c for p, c in status.items() if c != 200
    }

    # Phase 2: kill -9 mid-load, restart, `kills` times.
    uncertain: list[str] = []
    killed_load_requests = 0
    for k in range(kills):
        out = tmp_path / f"kill-{k}.json"
        proc = _load(server.url, out, 3, 32, catalog_pins, 10 + k)
        timer = threading.Timer(1.5, server.kill9)
        timer.start()
        result = _finish(proc, out, 120)
        timer.join()
        assert result["server_errors"] == 0, result["counts"]
        acked += result["acked"]
        uncertain += result["uncertain"]
        killed_load_requests += result["requests"]
        served += result["responses"]
        server.start()

    health = server.health()
    logged = _logged_pins(fresh_index)
    extra = set(logged) - set(acked)
    assert set(acked) <= set(logged), f"lost acknowledged pins: {set(acked) - set(logged)}"
    assert extra <= set(uncertain), f"pins nobody asked for: {extra - set(uncertain)}"
    assert len(logged) == len(set(logged)), "a pin was logged twice"
    assert health["pins"] == CATALOG_PINS + len(logged) and health["replayed"] == len(logged)
    status = asyncio.run(_findable(server.url, acked))
    lost = [p for p, code in status.items() if code != 200]
    assert not lost, f"{len(lost)} acknowledged pins not findable after restart: {lost[:5]}"
    record(
        f"service load+kill9 ({seconds}s)",
        concurrency=32,
        load_seconds=seconds,
        requests_served=served,
        server_errors_5xx=0,
        acknowledged_pins=len(acked),
        pins_lost=len(lost),
        kills_survived=kills,
        in_flight_at_kill_committed=len(extra),
        second_server_refused=True,
        p99_ms=max(r["p99_ms"] for r in phase1),
        throughput_rps=round(sum(r["responses"] for r in phase1) / seconds, 1),
    )


def test_store_lock_is_released_by_kill9(tmp_path):
    """The lock dies with its process: a restart after SIGKILL is never blocked by a stale lock."""
    from pinclip.serve.store import PinStore, StoreInUseError

    # A stand-in for a server: takes the same flock PinStore takes, then waits to be killed.
    holder = (
        "import fcntl, os, sys; "
        f"fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); "
        "print('locked', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(StoreInUseError, match=f"in use by another server \\(pid {proc.pid}\\)"):
        PinStore(tmp_path)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    store = PinStore(tmp_path)  # raises if the lock outlived its process
    with pytest.raises(StoreInUseError):
        PinStore(tmp_path)
    store.close()
