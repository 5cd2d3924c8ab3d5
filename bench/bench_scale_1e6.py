"""A catalog through every stage on one machine: side-by-side speed of the frozen work.

    python bench/bench_scale_1e6.py speed --before /path/to/worktree-at-f6473e4 --pins 2000

`speed` times the two stages issue 28 asked to make >= 3x faster, each in its own process,
the code before (`--before`: a checkout of the old code) and after (this checkout) in turn
(before, after, after, before, ...; medians), on one synthetic catalog and one `small`
model (the store settings of docs/training.md: int8, `keep_tokens=4`, `fine_grid=4`):
- `features`: the frozen-feature store of every pin built from nothing (images and texts,
  `FeatureStore.build` with its default of one process: what `pinclip train` does first);
- `embed`: `embed_catalog` of every pin with the PyTorch backend (after: `features=` the
  store just built, so only the trainable layers run; before: no such option).
Beside them, measured in the same run: the matmul peak (fp32 GFLOP/s, torch, all cores),
Pillow decode + eval resize per second on one core, and the FLOPs of the frozen parts per
pin (`torch.utils.flop_counter`), so the store build is stated as a share of the peak.
Results go into bench/results/scale_1e6.json under "speedup" and "speed".

    python bench/bench_scale_1e6.py scale --pins 10000 100000 --preset small --steps 20

`scale` runs every stage of a synthetic catalog of N pins, each a process of its own (what
a user runs), its process tree's RssAnon sampled every 0.2 s (bench_scale_train.run_stage):
catalog (build), check, split+neighbors (`load_training_data`: the split, the neighbor
sampler and the loss arrays), features (the store build `pinclip train` starts with),
train (`--steps` optimizer steps and the final validation), embed (`pinclip embed
--features`: from the store), index (`pinclip index build --kind ivfsq8`), serve (startup to
/healthz, text search at concurrency 8 for 10 s, 16 adds). Each stage's result is written
as soon as it ends, under `{"N": {"stage": {...}}}`; a stage already there is skipped, so
a killed run resumes. `--stages` picks stages (later ones need the earlier ones' outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT = RESULTS / "scale_1e6.json"
SMALL = {"text.keep_tokens": 4, "image.fine_grid": 4}
DTYPE = "int8"


def _load() -> dict:
    return json.loads(RESULT.read_text()) if RESULT.is_file() else {}


def _save(update: dict) -> None:
    """Merge `update` into the results file (written whole, so a kill leaves the old one)."""
    data = _load() | update
    tmp = RESULT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, RESULT)


# ----- children: one stage, one process, printing one JSON line -----------------------------
def child_features(args: argparse.Namespace) -> dict:
    from pinclip.data.catalog import read_catalog
    from pinclip.model import FeatureStore, PinCLIP

    model = PinCLIP.from_pretrained(args.model)
    catalog, _ = read_catalog(args.catalog, check_images=False)
    started = time.perf_counter()
    store = FeatureStore(args.store, model, dtype=DTYPE)
    store.build("images", [catalog.image_path(i) for i in catalog.pins["image"]])
    store.build("texts", catalog.texts())
    return {"seconds": time.perf_counter() - started, "pins": len(catalog.pins)}


def child_embed(args: argparse.Namespace) -> dict:
    from pinclip.serve.embed import embed_catalog

    opts = {"features": args.store} if args.store else {}
    started = time.perf_counter()
    embed_catalog(args.model, args.catalog, args.out, backend="torch", device="cpu", **opts)
    from pinclip.serve.embed import count_embeddings

    return {"seconds": time.perf_counter() - started, "pins": count_embeddings(args.out)}


def child_ceilings(args: argparse.Namespace) -> dict:
    """The machine's ceilings and the frozen parts' FLOPs per pin, in this process."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pinclip.data.catalog import read_catalog
    from pinclip.model import PinCLIP
    from pinclip.model.feature_store import _Frozen, _open_image, split_transform
    from pinclip.model.text_tower import tokenize

    model = PinCLIP.from_pretrained(args.model).eval()
    catalog, _ = read_catalog(args.catalog, check_images=False)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        rates.append(2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    paths = [catalog.image_path(i) for i in catalog.pins["image"][:256]]
    pil_steps, _ = split_transform(model.image_transform(train=False))
    torch.set_num_threads(1)
    t = time.perf_counter()
    for p in paths:
        image = _open_image(p)
        for step in pil_steps:
            image = step(image)
        np.asarray(image)
    decode = len(paths) / (time.perf_counter() - t)
    torch.set_num_threads(os.cpu_count() or 1)
    frozen = _Frozen(model, "images")
    texts = catalog.texts()[:64]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.image.stem_features(frozen.pixels(paths[:64]))
    image_flops = counter.get_total_flops() / 64
    tok = tokenize(model.tokenizer, texts, model.config.text.max_length)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.text.encoder_states(tok)
    text_flops = counter.get_total_flops() / 64
    return {
        "matmul_peak_gflops": round(statistics.median(rates), 1),
        "decode_resize_per_s_per_core": round(decode, 1),
        "frozen_gflop_per_pin": round((image_flops + text_flops) / 1e9, 4),
        "image_gflop_per_pin": round(image_flops / 1e9, 4),
        "text_gflop_per_pin": round(text_flops / 1e9, 4),
        "text_tokens_mean_padded": float(tok["input_ids"].shape[1]),
    }


def child_split(args: argparse.Namespace) -> dict:
    """The split, the neighbor sampler and the loss arrays, as `pinclip train` makes them."""
    from pinclip.train.config import load_config
    from pinclip.train.data import load_training_data

    cfg = load_config(None, json.loads(args.overrides))
    started = time.perf_counter()
    data = load_training_data(cfg.data)
    return {"seconds": time.perf_counter() - started, "pins": int(data.n_pins)}


def child_serve(args: argparse.Namespace) -> dict:
    """`pinclip serve` started on the index: startup, text search at concurrency 8, adds."""
    import asyncio
    import io

    import httpx
    import numpy as np
    from PIL import Image

    from bench_service import free_port, start_server, window

    port = free_port()
    started = time.perf_counter()
    extra = ["--catalog", args.catalog]
    server = start_server(Path(args.store), Path(args.model), "torch", port, Path(args.out), extra)
    startup = time.perf_counter() - started
    try:
        url = f"http://127.0.0.1:{port}"
        queries = ["red ring", "blue ocean dots", "forest kitchen", "magenta cake", "teal house"]
        asyncio.run(window(f"{url}/v1/search", 8, 2.0, queries))  # warm-up
        n, lat = asyncio.run(window(f"{url}/v1/search", 8, 10.0, queries))
        adds = []
        rng = np.random.default_rng(0)
        for i in range(16):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
            t = time.perf_counter()
            r = httpx.post(
                f"{url}/v1/pins",
                files={"file": ("pin.png", buf.getvalue(), "image/png")},
                data={"title": f"bench pin {i}", "pin_id": f"bench-add-{time.time_ns()}"},
                timeout=60,
            )
            r.raise_for_status()
            adds.append(time.perf_counter() - t)
    finally:
        server.terminate()
        server.wait(30)
    ms = np.array(lat) * 1000
    return {
        "seconds": startup,
        "startup_s": round(startup, 2),
        "search_c8_requests_per_s": round(n / 10.0, 1),
        "search_c8_p50_ms": round(float(np.percentile(ms, 50)), 1),
        "search_c8_p99_ms": round(float(np.percentile(ms, 99)), 1),
        "add_p50_ms": round(float(np.median(adds) * 1000), 1),
    }


CHILDREN = {
    "features": child_features,
    "embed": child_embed,
    "ceilings": child_ceilings,
    "split": child_split,
    "serve": child_serve,
}
STAGES = ("catalog", "check", "split", "features", "train", "embed", "index", "serve")
PRESETS = {  # the training overrides of bench_scale_train (the `small` store settings)
    "small": [
        "model.preset=small", "data.feature_dtype=int8", "model.overrides.text.keep_tokens=4",
        "model.overrides.image.fine_grid=4",
    ],
    "tiny": [
        "model.preset=tiny", "model.overrides.freeze_stem=true",
        "model.overrides.freeze_text_encoder=true",
    ],
}  # fmt: skip


def scale(args: argparse.Namespace) -> None:
    """Every stage of one catalog size after another; each result saved as it ends."""
    from bench_scale_train import run_stage

    for n in args.pins:
        work = Path(args.work) / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        catalog, run, cache = work / "catalog", work / "run", work / "cache"
        emb, index = work / "emb", work / "index"
        overrides = [
            *PRESETS[args.preset], f"data.catalog={catalog}", "data.build_if_missing=null",
            "data.check_images=false", f"data.cache_dir={cache}", f"run_dir={run}",
            f"max_steps={args.steps}", "batch_size=128", "tensorboard=false",
            f"data.feature_workers={args.workers}",
        ]  # fmt: skip
        pinclip = [sys.executable, "-m", "pinclip"]
        me = [sys.executable, str(Path(__file__).resolve()), "child"]
        commands = {
            "catalog": [*pinclip, "catalog", "build", "synthetic", str(catalog), "--pins", str(n),
                        "--seed", "0"],
            "check": [*pinclip, "catalog", "check", str(catalog)],
            "split": [*me, "split", "--overrides", json.dumps(overrides)],
            "features": [sys.executable, str(HERE / "bench_scale_train.py"), "--stage",
                         "features", "--overrides", *overrides],
            "train": [*pinclip, "train", *overrides],
            "embed": [*pinclip, "embed", str(run / "final"), str(catalog), str(emb), "--backend",
                      "torch", "--features", str(cache / "features"), "--part-size", "4096"],
            "index": [*pinclip, "index", "build", str(emb), str(index), "--kind", "ivfsq8",
                      "--catalog", str(catalog)],
            "serve": [*me, "serve", "--store", str(index), "--model", str(run / "final"),
                      "--catalog", str(catalog), "--out", str(work / "server.log"),
                      "--result", str(work / "serve.json")],
        }  # fmt: skip
        commands["split"] += ["--result", str(work / "split.json")]
        for stage in args.stages:
            if stage in _load().get(str(n), {}):
                continue
            if time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
                print(f"not starting {stage} at N={n}: past {args.stop_at} UTC", flush=True)
                return
            load = os.getloadavg()[0]
            env = os.environ | {"PYTHONPATH": f"{ROOT / 'src'}:{HERE}"}
            r = run_stage(commands[stage], work / f"{stage}.log", env=env)
            r["load_1min_before"] = round(load, 2)
            child = work / f"{stage}.json"
            if stage in ("split", "serve") and child.is_file():  # the child's own timing
                r["process_seconds"] = r["seconds"]
                r |= json.loads(child.read_text())
            if stage in ("features", "train", "embed"):
                r["preset"] = args.preset
            r["pins_per_s"] = round(n / r["seconds"], 1)
            data = _load()
            data.setdefault(str(n), {})[stage] = r
            _save({str(n): data[str(n)]})
            print(n, stage, json.dumps(r), flush=True)


def run_child(code: Path, stage: str, **kw: str | None) -> dict:
    """One stage in a fresh process importing pinclip from `code`/src; RssAnon sampled."""
    from bench_scale_train import run_stage

    cmd = [sys.executable, str(Path(__file__).resolve()), "child", stage]
    for k, v in kw.items():
        if v is not None:
            cmd += [f"--{k}", str(v)]
    env = os.environ | {"PYTHONPATH": f"{code / 'src'}:{HERE}"}
    log = Path(kw.get("work") or "/tmp") / f"{stage}.log"
    out_file = log.with_suffix(".json")
    cmd += ["--result", str(out_file)]
    load = os.getloadavg()[0]
    stats = run_stage(cmd, log, env=env)
    result = json.loads(out_file.read_text())
    stats["process_seconds"] = stats.pop("seconds")  # with imports and the model's load
    return result | stats | {"load_1min_before": round(load, 2)}


def speed(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    catalog = work / f"syn-{args.pins}"
    after, before = ROOT, Path(args.before).resolve()
    if not (catalog / "catalog.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "pinclip", "catalog", "build", "synthetic", str(catalog),
             "--pins", str(args.pins), "--seed", "0"],
            check=True, env=os.environ | {"PYTHONPATH": str(ROOT / "src")},
        )  # fmt: skip
    model = work / "model-small"
    if not (model / "config.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pinclip.model import PinCLIP; "
                f"PinCLIP.from_preset('small', **{SMALL!r}).save_pretrained(sys.argv[1])",
                str(model),
            ],
            check=True,
            env=os.environ | {"PYTHONPATH": str(before / "src")},
        )  # fmt: skip  (saved by the old code: the new one reads its config, not the reverse)
    runs: dict[str, dict[str, list[dict]]] = {"before": {}, "after": {}}
    ceilings = run_child(after, "ceilings", model=str(model), catalog=str(catalog), work=str(work))
    order = ["before", "after"]
    for rep in range(args.reps):
        for side in order if rep % 2 == 0 else order[::-1]:
            code = before if side == "before" else after
            store = work / f"store-{side}"
            shutil.rmtree(store, ignore_errors=True)
            feats = run_child(
                code, "features", model=str(model), catalog=str(catalog), store=str(store),
                work=str(work),
            )  # fmt: skip
            out = work / f"emb-{side}"
            shutil.rmtree(out, ignore_errors=True)
            emb = run_child(
                code, "embed", model=str(model), catalog=str(catalog), out=str(out),
                store=str(store) if side == "after" else None, work=str(work),
            )  # fmt: skip
            for stage, r in (("features", feats), ("embed", emb)):
                r["pins_per_s"] = round(r["pins"] / r["seconds"], 2)
                runs[side].setdefault(stage, []).append(r)
                print(side, stage, r, flush=True)
            _save({"speed": _summary(runs, ceilings, args)})
    summary = _summary(runs, ceilings, args)
    _save({"speed": summary, "speedup": summary["speedup"]})
    print(json.dumps(summary["speedup"]))


def _summary(runs: dict, ceilings: dict, args: argparse.Namespace) -> dict:
    med = {
        side: {s: statistics.median(r["pins_per_s"] for r in rs) for s, rs in stages.items()}
        for side, stages in runs.items()
    }
    speedup = {
        s: round(med["after"][s] / med["before"][s], 2)
        for s in ("features", "embed")
        if s in med["after"] and s in med["before"]
    }
    gflop = ceilings["frozen_gflop_per_pin"]
    share = {
        side: round(m["features"] * gflop / ceilings["matmul_peak_gflops"], 3)
        for side, m in med.items()
        if "features" in m
    }
    return {
        "command": " ".join(sys.argv),
        "pins": args.pins,
        "preset": "small (int8 store, keep_tokens=4, fine_grid=4)",
        "before": "f6473e4 (main before issue 28)",
        "median_pins_per_s": med,
        "speedup": speedup,
        "ceilings": ceilings,
        "features_share_of_matmul_peak": share,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--before", required=True, help="a checkout of the code to compare with")
    sp.add_argument("--pins", type=int, default=2000)
    sp.add_argument("--reps", type=int, default=2)
    sp.add_argument("--work", default="/tmp/pinclip-scale")
    sc = sub.add_parser("scale")
    sc.add_argument("--pins", type=int, nargs="+", default=[10_000, 100_000])
    sc.add_argument("--preset", choices=sorted(PRESETS), default="small")
    sc.add_argument("--steps", type=int, default=20)
    sc.add_argument("--workers", type=int, default=1, help="feature store processes")
    sc.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    sc.add_argument("--stop-at", default="07:40", help="start no stage after HH:MM UTC")
    sc.add_argument("--work", default="/tmp/pinclip-scale")
    ch = sub.add_parser("child")
    ch.add_argument("stage", choices=sorted(CHILDREN))
    for opt in ("model", "catalog", "store", "out", "work", "result", "overrides"):
        ch.add_argument(f"--{opt}")
    args = parser.parse_args()
    if args.cmd == "speed":
        speed(args)
    elif args.cmd == "scale":
        scale(args)
    else:
        import logging

        logging.basicConfig(level=logging.INFO)  # the log says whether the store was used
        result = CHILDREN[args.stage](args)
        Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
