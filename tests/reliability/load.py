"""A bounded load generator: N async workers mixing searches and pin additions for T seconds.

Run as a process (`python load.py URL --seconds 5 --concurrency 16 --out result.json`) so two
of them are two independent writers. It stops by itself at the deadline. An addition counts
as acknowledged only when its 201 arrived; one whose connection broke after the request was
sent is "uncertain" (the server may or may not have committed it).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import time
from collections import Counter

import httpx
import numpy as np
from PIL import Image

WORDS = [
    "red",
    "blue",
    "green",
    "heart",
    "star",
    "cat",
    "dog",
    "food",
    "sun",
    "moon",
    "tree",
    "car",
    "house",
    "flower",
    "happy",
]


def _png(rng: random.Random) -> bytes:
    size = rng.choice((16, 24, 32))
    pixels = np.random.default_rng(rng.getrandbits(32)).integers(0, 256, (size, size, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


async def run_load(
    url: str,
    *,
    seconds: float,
    concurrency: int,
    pins: list[str],
    seed: int,
    prefix: str,
    add_share: float = 0.25,
) -> dict:
    counts: Counter[str] = Counter()
    acked: list[str] = []
    uncertain: list[str] = []
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency)

    async def worker(w: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(seed * 1000 + w)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            roll = rng.random()
            pin_id = f"{prefix}-{w}-{n}"
            start = time.monotonic()
            try:
                if roll < add_share:
                    kind = "add"
                    files = {"file": ("p.png", _png(rng), "image/png")}
                    data = {"title": " ".join(rng.sample(WORDS, 2)), "pin_id": pin_id}
                    r = await client.post("/v1/pins", files=files, data=data)
                    if r.status_code == 201:
                        acked.append(r.json()["pin_id"])
                elif roll < add_share + 0.45:
                    kind = "search"
                    q = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
                    r = await client.get("/v1/search", params={"q": q, "k": 10})
                elif roll < add_share + 0.6:
                    kind = "related"
                    r = await client.get(f"/v1/pins/{rng.choice(pins)}/related", params={"k": 5})
                else:
                    kind = "boards"
                    r = await client.get(f"/v1/pins/{rng.choice(pins)}/boards", params={"k": 3})
                counts[f"{kind} {r.status_code}"] += 1
                latencies.append(time.monotonic() - start)
            except httpx.ConnectError:
                counts[f"{kind} refused"] += 1  # server down: nothing was sent
                await asyncio.sleep(0.05)
            except httpx.HTTPError as err:
                counts[f"{kind} {type(err).__name__}"] += 1
                if kind == "add":
                    uncertain.append(pin_id)
                await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(w, client) for w in range(concurrency)))
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        "counts": dict(counts),
        "requests": sum(counts.values()),
        "responses": len(latencies),
        "server_errors": sum(v for k, v in counts.items() if k.split()[-1].startswith("5")),
        "acked": acked,
        "uncertain": uncertain,
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--pins", required=True, help="comma-separated catalog pin ids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="load")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(
        run_load(
            args.url,
            seconds=args.seconds,
            concurrency=args.concurrency,
            pins=args.pins.split(","),
            seed=args.seed,
            prefix=args.prefix,
        )
    )
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
