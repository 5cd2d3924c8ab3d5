"""Service: text search over HTTP at concurrency 1, 8 and 32 (requests/s, p50/p99 latency).

    python bench/bench_service.py --index runs/g-serve/index --model runs/g-serve/model

A missing --index is built first (`pinclip.serve.prepare_serving` of --catalog with --model,
or with runs/emoji-small/best from `make demo` when --model is missing too).

Starts `pinclip serve` on 127.0.0.1 (a free port) in a subprocess, waits for /healthz, then
drives GET /v1/search?q=... from an asyncio + httpx client with N requests in flight for a
fixed window per level. Levels are interleaved (1, 8, 32, 1, 8, 32, ...) for `--repeats`
windows; requests/s is the median over windows, latency percentiles pool every request of a
level. Queries are distinct two-word phrases from a fixed vocabulary (seed 0), so no response
is served from a cache. Client and server share the machine's 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console

from _common import REPEATS, markdown_table, write_result

WORDS = [
    "red",
    "blue",
    "green",
    "happy",
    "sad",
    "face",
    "cat",
    "dog",
    "food",
    "fruit",
    "heart",
    "star",
    "moon",
    "sun",
    "flag",
    "car",
    "tree",
    "flower",
    "hand",
    "music",
    "sport",
    "ball",
    "water",
    "fire",
    "snow",
    "night",
    "party",
    "cake",
    "tea",
    "house",
    "money",
    "book",
    "clock",
    "phone",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    index: Path, model: Path, backend: str, port: int, log: Path, extra: list[str] | None = None
) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("pinclip")
    cmd = [
        str(exe),
        "serve",
        "--index",
        str(index),
        "--model",
        str(model),
        "--backend",
        backend,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(extra or []),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PINCLIP_API_KEY": ""},
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server did not answer /healthz within 180 s; see {log}")


async def window(
    url: str, concurrency: int, seconds: float, queries: list[str]
) -> tuple[int, list[float]]:
    """Requests completed and their latencies (s) with `concurrency` requests in flight."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            q = queries[next(counter) % len(queries)]
            start = time.perf_counter()
            r = await client.get(url, params={"q": q, "k": 10})
            r.raise_for_status()
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return len(latencies), latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", type=Path, default=Path("runs/g-serve/index"))
    ap.add_argument("--model", type=Path, default=Path("runs/g-serve/model"))
    ap.add_argument(
        "--catalog", type=Path, default=Path("data/emoji"), help="indexed if --index is missing"
    )
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of one timed window")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args()
    console = Console()
    if not args.index.is_dir():  # a fresh checkout: index the demo model's catalog first
        from pinclip.serve import prepare_serving

        if not args.model.is_dir():
            args.model = Path("runs/emoji-small/best")
        if not args.model.is_dir():
            raise SystemExit(f"{args.model}: no model; run `make demo` first or pass --model")
        console.print(f"{args.index} missing: embedding {args.catalog} and building it")
        args.index = prepare_serving(args.model, args.catalog, args.index.parent)[0]
    rng = np.random.default_rng(0)
    queries = [f"{WORDS[a]} {WORDS[b]}" for a, b in rng.integers(0, len(WORDS), (5000, 2))]
    port = free_port()
    log = Path("runs/bench-logs/service-server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = start_server(args.index, args.model, args.backend, port, log)
    url = f"http://127.0.0.1:{port}/v1/search"
    levels = [int(x) for x in args.levels.split(",")]
    rates: dict[int, list[float]] = {c: [] for c in levels}
    lat: dict[int, list[float]] = {c: [] for c in levels}
    try:
        asyncio.run(window(url, 2, 2.0, queries))  # warm-up
        for r in range(args.repeats):
            for c in levels:
                done, ls = asyncio.run(window(url, c, args.seconds, queries[r * 997 :]))
                rates[c].append(done / args.seconds)
                lat[c] += ls
            console.print(
                f"window {r + 1}/{args.repeats}: "
                + ", ".join(f"c={c} {rates[c][-1]:.1f} req/s" for c in levels)
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows, result = (
        [],
        {
            "index": str(args.index),
            "model": str(args.model),
            "backend": args.backend,
            "window_s": args.seconds,
            "levels": {},
        },
    )
    base = float(np.median(rates[levels[0]]))
    for c in levels:
        rps = float(np.median(rates[c]))
        p50, p99 = (float(np.percentile(lat[c], q)) * 1000 for q in (50, 99))
        result["levels"][c] = {
            "requests_per_s": rps,
            "windows": rates[c],
            "p50_ms": p50,
            "p99_ms": p99,
            "requests": len(lat[c]),
            "rps_over_c1": rps / base,
        }
        rows.append([c, rps, rps / base, p50, p99, len(lat[c])])
    table = markdown_table(
        ["concurrency", "requests/s", "× c=1", "p50 ms", "p99 ms", "requests"], rows
    )
    console.print(table)
    write_result("service", result, table)


if __name__ == "__main__":
    main()
