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
A third side, `after-int8`, is this checkout with `text_compute="int8"`
(`data.feature_text_compute=int8`: the text encoder's dynamic-int8 ONNX graph), reported as
`speedup.features_text_int8` beside the default's `speedup.features`.
Beside them, measured in the same run: the matmul peak (fp32 GFLOP/s, torch, all cores),
Pillow decode + eval resize per second on one core, and the FLOPs of the frozen parts per
pin (`torch.utils.flop_counter`), so the store build is stated as a share of the peak.
Results go into bench/results/scale_1e6.json under "speedup" and "speed" (`--key` keeps
another run, e.g. a larger catalog, beside it).

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
    opts = {"text_compute": args.text_compute} if args.text_compute else {}  # old code: none
    store = FeatureStore(args.store, model, dtype=DTYPE, **opts)
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
    pixels = frozen.pixels(paths[:64])

    def flops(fn) -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    image_flops = flops(lambda: model.image.stem_features(pixels)) / 64
    # the text encoder's work per text without padding (each text alone: its own tokens),
    # and as `embed` runs it (the batch padded to its longest text)
    singles = [tokenize(model.tokenizer, [t], model.config.text.max_length) for t in texts]
    text_flops = sum(flops(lambda t=t: model.text.encoder_states(t)) for t in singles) / 64
    tok = tokenize(model.tokenizer, texts, model.config.text.max_length)
    text_padded = flops(lambda: model.text.encoder_states(tok)) / 64
    # a whole pin through the model from raw inputs (`embed` before) and the trainable rest
    # (what `embed --features` still computes: the whole minus the frozen parts, same inputs)
    whole = flops(lambda: model(images=pixels, text=tok)) / 64
    return {
        "matmul_peak_gflops": round(statistics.median(rates), 1),
        "matmul_gflops_runs": [round(r, 1) for r in rates],
        "decode_resize_per_s_per_core": round(decode, 1),
        "frozen_gflop_per_pin": round((image_flops + text_flops) / 1e9, 4),
        "image_gflop_per_pin": round(image_flops / 1e9, 4),
        "text_gflop_per_pin": round(text_flops / 1e9, 4),
        "text_gflop_per_pin_padded_batch_of_64": round(text_padded / 1e9, 4),
        "text_tokens_mean": round(
            statistics.mean(int(t["attention_mask"].sum()) for t in singles), 1
        ),
        "text_tokens_padded_batch_of_64": float(tok["input_ids"].shape[1]),
        "embed_whole_gflop_per_pin": round(whole / 1e9, 4),
        "embed_trainable_gflop_per_pin": round((whole - image_flops - text_padded) / 1e9, 4),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
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


def child_tile(args: argparse.Namespace) -> dict:
    """Embeddings of a smaller catalog tiled to this catalog's pins (a stated stand-in for
    `embed` at a size whose store was not built): row i is row i mod M of the source plus
    seeded noise (sigma 0.02, renormalised), under the catalog's pin id i, written as
    `pinclip embed` writes (parquet parts + manifest, the source's model recorded)."""
    import numpy as np
    import pyarrow.parquet as pq

    from pinclip.serve.embed import KEYS, embeddings_table, part_name, read_embeddings

    started = time.perf_counter()
    _, source = read_embeddings(args.store)
    m = len(source["pin_emb"])
    ids = pq.read_table(Path(args.catalog) / "pins.parquet", columns=["pin_id"])["pin_id"]
    ids = ids.to_pylist()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "parts").mkdir(parents=True)
    rng = np.random.default_rng(0)
    part = 65_536
    n_parts = 0
    for start in range(0, len(ids), part):
        rows = np.arange(start, min(start + part, len(ids))) % m
        emb = {}
        for key in KEYS:
            x = source[key][rows] + rng.normal(0, 0.02, (len(rows), source[key].shape[1]))
            emb[key] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        pq.write_table(embeddings_table(ids[start : start + part], emb), out / part_name(n_parts))
        n_parts += 1
    manifest = json.loads((Path(args.store) / "manifest.json").read_text())
    manifest |= {"n_parts": n_parts, "done": list(range(n_parts)), "rows": len(ids),
                 "part_size": part, "stand_in": f"tiled from {m} embedded pins"}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return {
        "seconds": time.perf_counter() - started,
        "stand_in": f"not embedded: the {m:,} pins embedded at that size (from their store) "
        f"tiled to {len(ids):,} rows with seeded noise, under this catalog's pin ids; pins/s "
        f"is the {m:,}-pin embed's measured rate",
    }


CHILDREN = {
    "tile": child_tile,
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
    """Every stage of one catalog size after another; each result saved as it ends.

    With `--stand-in-from M` (a size measured before, e.g. 100000), the stages that would
    take hours at N (`features`, `train`, `embed`) are stand-ins, each saying so:
    `features` runs for real on the N catalog for `--probe-seconds` and is then stopped (its
    peak memory holds the whole catalog, its keys and index; its rate is the rows it
    finished), the seconds extrapolated from M's measured rate; `train` is not run (its
    figures extrapolated from M); `embed` writes M's embeddings tiled to N rows (the N
    catalog's own pin ids, in order, a small seeded noise), so that `index` and `serve` run on
    N real vectors with M's model."""
    from bench_scale_train import _MetricsWatch, run_stage

    for n in args.pins:
        work = Path(args.work) / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        catalog, run, cache = work / "catalog", work / "run", work / "cache"
        if args.preset != "small":  # a stand-in preset's run beside the measured one
            run = work / f"run-{args.preset}"
        emb, index = work / "emb", work / "index"
        src = Path(args.work) / f"n{args.stand_in_from}" if args.stand_in_from else None
        model = (src if src else work) / "run" / "final"
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
            "embed": [*pinclip, "embed", str(model), str(catalog), str(emb), "--backend",
                      "torch", "--features", str(cache / "features"), "--part-size", "4096"],
            "index": [*pinclip, "index", "build", str(emb), str(index), "--kind", "ivfsq8",
                      "--catalog", str(catalog)],
            "serve": [*me, "serve", "--store", str(index), "--model", str(model),
                      "--catalog", str(catalog), "--out", str(work / "server.log"),
                      "--result", str(work / "serve.json")],
        }  # fmt: skip
        commands["split"] += ["--result", str(work / "split.json")]
        if src:
            commands["embed"] = [*me, "tile", "--store", str(src / "emb"), "--catalog",
                                 str(catalog), "--out", str(emb), "--result",
                                 str(work / "embed.json")]  # fmt: skip
        for stage in args.stages:
            key = stage if args.preset == "small" else f"{stage}:{args.preset}"  # a stand-in
            if key in _load().get(str(n), {}) and stage not in args.redo:
                continue
            if args.stop_at and time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
                print(f"not starting {stage} at N={n}: past {args.stop_at} UTC", flush=True)
                return
            load = os.getloadavg()
            env = os.environ | {"PYTHONPATH": f"{ROOT / 'src'}:{HERE}"}
            measured = _load().get(str(args.stand_in_from), {}).get(stage) if src else None
            if src and stage == "train":
                r = _train_stand_in(n, args.stand_in_from, measured)
            else:
                watch = None
                if stage == "train":
                    (run / "metrics.jsonl").unlink(missing_ok=True)
                    watch = _MetricsWatch(run / "metrics.jsonl")
                    watch.start()
                timeout = args.probe_seconds if src and stage == "features" else None
                r = run_stage(commands[stage], work / f"{stage}.log", env=env, timeout=timeout)
                if watch is not None:
                    watch.stop.set()
                    watch.join()
                    r |= _train_metrics(watch.lines)
            r["load_avg_before_1_5_15"] = [round(x, 2) for x in load]
            r["load_avg_after_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
            child = work / f"{stage}.json"
            if stage in ("split", "serve", "embed") and child.is_file():  # the child's timing
                r["process_seconds"] = r["seconds"]
                r |= json.loads(child.read_text())
            if stage == "features":
                r |= _store_rows(cache / "features")
            if src and stage == "features":
                r |= _features_stand_in(n, args.stand_in_from, measured, r)
            if src and stage == "embed":  # the tiling's own figures kept apart
                r["tile"] = {k: r.pop(k) for k in ("process_seconds", "peak_rss_mib")}
                r["peak_rss_mib"] = None  # not measured at this size
                if measured:
                    r["pins_per_s"] = measured["pins_per_s"]
                    r["seconds"] = round(n / measured["pins_per_s"], 1)
                    r["seconds_extrapolated"] = True
            if stage in ("features", "train", "embed"):
                r["preset"] = args.preset
            if "pins_per_s" not in r:
                r["pins_per_s"] = round(n / r["seconds"], 1)
            data = _load()
            data.setdefault(str(n), {})[key] = r
            _save({str(n): data[str(n)]})
            print(n, stage, json.dumps(r), flush=True)


def _train_metrics(lines: list) -> dict:
    """samples/s of the steps and the final validation's seconds, from metrics.jsonl."""
    steps = [(t, r) for t, r in lines if "loss" in r]
    val = [(t, r) for t, r in lines if "val_recall@10" in r]
    out: dict = {}
    if steps:
        out["samples_per_s_median"] = round(
            statistics.median(r["samples_per_s"] for _, r in steps), 1
        )
    if steps and val:
        out["final_validation_seconds"] = round(val[-1][0] - steps[-1][0], 2)
        out["val_recall@10"] = val[-1][1]["val_recall@10"]
    return out


def _store_rows(store: Path) -> dict:
    """Rows in the store's finished segments, per namespace kind, and its size on disk."""
    rows: dict[str, int] = {}
    for keys in store.glob("*/seg-*/keys.npy"):
        kind = keys.parent.parent.name.split("-")[0]
        import numpy as np

        rows[kind] = rows.get(kind, 0) + len(np.load(keys, mmap_mode="r"))
    size = sum(p.stat().st_size for p in store.rglob("*.npy"))
    return {"store_rows": rows, "store_mib": round(size / 2**20, 1)}


def _features_stand_in(n: int, m: int, measured: dict | None, probe: dict) -> dict:
    """The probe's figures kept apart; seconds and pins/s extrapolated from size `m`."""
    rows = probe.pop("store_rows", {})
    out = {
        "stand_in": f"the store build run on the {n:,}-pin catalog for "
        f"{probe.get('killed_after_s')} s, then stopped (peak RssAnon measured with the whole "
        f"catalog loaded); seconds extrapolated linearly from the {m:,}-pin build's measured "
        "pins/s (the work per pin does not depend on N)",
        "probe": {"seconds": probe.pop("killed_after_s", None), "rows_finished": rows},
    }
    if measured:
        out["pins_per_s"] = measured["pins_per_s"]
        out["seconds"] = round(n / measured["pins_per_s"], 1)
        out["seconds_extrapolated"] = True
    return out


def _train_stand_in(n: int, m: int, measured: dict | None) -> dict:
    """`train` at n not run: the fixed steps cost what they cost at m; the validation's exact
    top-k over `val_frac` of the pins grows with n^2 (its embedding pass with n)."""
    if not measured:
        raise SystemExit(f"train stand-in at {n} needs the {m}-pin train measured first")
    val = measured.get("final_validation_seconds", 0.0)
    steps = measured["seconds"] - val
    scale = n / m
    seconds = steps + val * scale**2
    return {
        "stand_in": f"not run at {n:,}: extrapolated from the {m:,}-pin run (same steps; the "
        f"final validation's {val:.1f} s scaled by (N/M)^2 = {scale**2:g}, its exact top-k "
        "being val x all pins); peak RssAnon not measured at this size",
        "seconds": round(seconds, 1),
        "seconds_extrapolated": True,
        "peak_rss_mib": None,
        "pins_per_s": round(n / seconds, 1),
    }


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
    return (
        result
        | stats
        | {
            "load_1min_before": round(load, 2),
            "load_avg_after_1_5_15": [round(x, 2) for x in os.getloadavg()],
        }
    )


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
    # after-int8: the same code with data.feature_text_compute=int8 (the opt-in int8 encoder)
    order = ["before", "after", "after-int8"]
    runs: dict[str, dict[str, list[dict]]] = {side: {} for side in order}
    ceil = {}
    previous = _load().get(args.key, {})
    if previous.get("pins") == args.pins and set(previous.get("runs", {})) == set(order):
        runs, ceil = previous["runs"], previous["ceilings_runs"]  # resume a killed run
    if "start" not in ceil:
        ceil["start"] = run_child(
            after, "ceilings", model=str(model), catalog=str(catalog), work=str(work)
        )
    done = min(len(runs[side].get("embed", [])) for side in order)
    for rep in range(done, args.reps):
        for side in order if rep % 2 == 0 else order[::-1]:  # each side first and last
            code = before if side == "before" else after
            store = work / f"store-{side}"
            shutil.rmtree(store, ignore_errors=True)
            feats = run_child(
                code, "features", model=str(model), catalog=str(catalog), store=str(store),
                work=str(work), **{"text-compute": "int8" if side == "after-int8" else None},
            )  # fmt: skip
            out = work / f"emb-{side}"
            shutil.rmtree(out, ignore_errors=True)
            emb = run_child(
                code, "embed", model=str(model), catalog=str(catalog), out=str(out),
                store=None if side == "before" else str(store), work=str(work),
            )  # fmt: skip
            for stage, r in (("features", feats), ("embed", emb)):
                r["pins_per_s"] = round(r["pins"] / r["seconds"], 2)
                runs[side].setdefault(stage, []).append(r)
                print(side, stage, r, flush=True)
            _save({args.key: _summary(runs, ceil, args)})
    if "end" not in ceil:  # the ceilings again: the load may have moved during the run
        ceil["end"] = run_child(
            after, "ceilings", model=str(model), catalog=str(catalog), work=str(work)
        )
    summary = _summary(runs, ceil, args)
    _save({args.key: summary} | ({"speedup": summary["speedup"]} if args.key == "speed" else {}))
    print(json.dumps(summary["speedup"]))


def _summary(runs: dict, ceil: dict, args: argparse.Namespace) -> dict:
    """Medians per side, the speedups, and each stage as a share of its ceiling (the highest
    matmul peak measured in the run: the least disturbed by other load)."""
    med = {
        side: {s: statistics.median(r["pins_per_s"] for r in rs) for s, rs in stages.items()}
        for side, stages in runs.items()
    }
    speedup = {
        s: round(med["after"][s] / med["before"][s], 2)
        for s in ("features", "embed")
        if s in med["after"] and s in med["before"]
    }
    if "features" in med.get("after-int8", {}) and "features" in med["before"]:
        speedup["features_text_int8"] = round(
            med["after-int8"]["features"] / med["before"]["features"], 2
        )
    ceilings = dict(ceil["start"])
    peak = max(c["matmul_peak_gflops"] for c in ceil.values())
    ceilings["matmul_peak_gflops"] = peak
    ceilings["decode_resize_per_s_per_core"] = max(
        c["decode_resize_per_s_per_core"] for c in ceil.values()
    )
    cores = os.cpu_count() or 1
    gflop = {  # the work per pin of each stage on each side
        ("before", "features"): ceilings["frozen_gflop_per_pin"],
        ("after", "features"): ceilings["frozen_gflop_per_pin"],
        ("before", "embed"): ceilings["embed_whole_gflop_per_pin"],
        ("after", "embed"): ceilings["embed_trainable_gflop_per_pin"],
        ("after-int8", "features"): ceilings["frozen_gflop_per_pin"],  # int8 ops, counted as
        ("after-int8", "embed"): ceilings["embed_trainable_gflop_per_pin"],  # the fp32 FLOPs
    }
    share: dict = {}
    for (side, stage), g in gflop.items():
        if stage in med.get(side, {}):
            rate = med[side][stage]
            share.setdefault(side, {})[stage] = {
                "achieved_gflops": round(rate * g, 1),
                "share_of_matmul_peak": round(rate * g / peak, 3),
            }
            if stage == "features" or side == "before":  # stages that decode every image
                share[side][stage]["share_of_decode_ceiling"] = round(
                    rate / (ceilings["decode_resize_per_s_per_core"] * cores), 4
                )
    return {
        "command": " ".join(sys.argv),
        "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "pins": args.pins,
        "reps": args.reps,
        "preset": "small (int8 store, keep_tokens=4, fine_grid=4)",
        "before": "f6473e4 (main before issue 28)",
        "after": _head(),
        "cores": cores,
        "median_pins_per_s": med,
        "speedup": speedup,
        "ceilings": ceilings,
        "ceilings_runs": ceil,
        "share_of_ceilings": share,
        "runs": runs,
    }


def _head() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()[:100]


def table(args: argparse.Namespace) -> None:
    """The scale results as markdown: seconds, peak RssAnon and pins/s per stage and size,
    and each stage's memory slope (d log RssAnon / d log N) and 10^6/10^5 ratio."""
    import math

    data = _load()
    sizes = sorted(int(k) for k in data if k.isdigit())
    print("| stage | " + " | ".join(f"{n:,}: s / MiB / pins/s" for n in sizes) + " | slope "
          "10^4→10^5 | slope 10^5→10^6 | RssAnon 10^6 / 10^5 |")  # fmt: skip
    print("|---|" + "---:|" * (len(sizes) + 3))
    extra = sorted({k for n in sizes for k in data[str(n)] if k not in STAGES})  # other presets
    for stage in [*STAGES, *extra]:
        cells, peaks = [], {}
        for n in sizes:
            r = data[str(n)].get(stage)
            if not r:
                cells.append("—")
                continue
            mark = "*" if r.get("stand_in") else ""
            peak = r.get("peak_rss_mib")
            if peak:
                peaks[n] = peak
            cells.append(
                f"{r['seconds']:,.1f}{mark} / {f'{peak:,.0f}' if peak else 'n/m'} / "
                f"{r['pins_per_s']:,.1f}"
            )

        def slope(a: int, b: int, peaks: dict = peaks) -> str:
            if a in peaks and b in peaks:
                return f"{math.log(peaks[b] / peaks[a]) / math.log(b / a):.2f}"
            return "—"

        ratio = f"{peaks[10**6] / peaks[10**5]:.2f}" if 10**6 in peaks and 10**5 in peaks else "—"
        print(f"| {stage} | " + " | ".join(cells) + f" | {slope(10**4, 10**5)} | "
              f"{slope(10**5, 10**6)} | {ratio} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--key", default="speed", help="the results' key (another size beside)")
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
    sc.add_argument("--stop-at", default="", help="start no stage after HH:MM UTC")
    sc.add_argument("--work", default="/tmp/pinclip-scale")
    sc.add_argument("--stand-in-from", type=int, help="a measured size: stand-ins at the others")
    sc.add_argument("--probe-seconds", type=float, default=240.0)
    sc.add_argument(
        "--redo",
        nargs="*",
        choices=STAGES,
        default=[],
        help="measure these stages again (the figures saved before are replaced)",
    )
    sub.add_parser("table", help="print the scale results as a markdown table")
    ch = sub.add_parser("child")
    ch.add_argument("stage", choices=sorted(CHILDREN))
    for opt in ("model", "catalog", "store", "out", "work", "result", "overrides", "text-compute"):
        ch.add_argument(f"--{opt}")
    args = parser.parse_args()
    if args.cmd == "speed":
        speed(args)
    elif args.cmd == "scale":
        scale(args)
    elif args.cmd == "table":
        table(args)
    else:
        import logging

        logging.basicConfig(level=logging.INFO)  # the log says whether the store was used
        result = CHILDREN[args.stage](args)
        Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
