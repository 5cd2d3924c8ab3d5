"""Cost of tuning the top of the frozen towers: one optimizer step per cut, side by side.

    python bench/bench_tune_top.py --config configs/emoji-small.yaml data.catalog=data/emoji

Contenders (same model, batch, data order; each reads its own feature store, the states
below its cut): `reference` (frozen towers), `text1` (`text.tune_last_layers=1`), `image1`
(`image.tune_last_blocks=1`), `both`. FLOPs (torch FlopCounterMode over one step, forward +
backward) are machine-independent; wall times are medians of interleaved repeats, reported
as ratios to the reference. Stores missing from `data.cache_dir` are built first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.flop_counter import FlopCounterMode

from _common import REPEATS, interleaved, markdown_table, write_result
from pinclip.model.inputs import PinInputs
from pinclip.train.config import load_config
from pinclip.train.data import batch_plan, load_training_data
from pinclip.train.loader import MicroBatch
from pinclip.train.recipe import build_model, build_optimizer
from pinclip.train.step import step_loss

TEXT, IMAGE = "model.overrides.text.tune_last_layers=1", "model.overrides.image.tune_last_blocks=1"
CONTENDERS = {"reference": [], "text1": [TEXT], "image1": [IMAGE], "both": [TEXT, IMAGE]}


class Step:
    def __init__(self, cfg, data) -> None:
        self.cfg, self.data = cfg, data
        self.model = build_model(cfg.model, seed=cfg.seed, loss_kind=cfg.loss.kind).train()
        self.inputs = PinInputs.prepare(
            self.model,
            data,
            cache_dir=Path(cfg.data.cache_dir),
            device=torch.device("cpu"),
            console=Console(quiet=True),
        )
        self.plan = batch_plan(cfg, data)
        self.opt, _ = build_optimizer(cfg.optim, self.model, total_steps=100)
        self.loss_cfg = cfg.loss.for_model(self.model.config.matryoshka_dims)
        self.step = 0

    def one(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        anchors, neighbors = self.plan.global_batch(self.step, self.data)
        mb = MicroBatch.unloaded(self.step, anchors, neighbors)
        loss, _ = step_loss(self.model, self.inputs, self.data, mb, self.loss_cfg)
        loss.backward()
        self.opt.step()
        self.step += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/emoji-small.yaml")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every contender")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfgs = {k: load_config(args.config, [*args.overrides, *v]) for k, v in CONTENDERS.items()}
    data = load_training_data(cfgs["reference"].data, console=Console(quiet=True))
    steps = {k: Step(c, data) for k, c in cfgs.items()}
    flops = {}
    for name, s in steps.items():
        counter = FlopCounterMode(display=False)
        with counter:
            s.one()
        flops[name] = counter.get_total_flops()
    started = time.perf_counter()
    timings = interleaved({k: s.one for k, s in steps.items()}, args.repeats, warmup=1)
    base_t, base_f = timings["reference"]["median_s"], flops["reference"]
    rows, result = [], {"config": args.config, "overrides": args.overrides, "contenders": {}}
    for name, s in steps.items():
        t, f = timings[name]["median_s"], flops[name]
        trainable = s.model.num_parameters(trainable_only=True)
        rows.append([name, trainable / 1e6, f / 1e9, f / base_f, t, t / base_t])
        result["contenders"][name] = {
            "trainable_m": trainable / 1e6,
            "gflops_per_step": f / 1e9,
            "flops_vs_reference": f / base_f,
            "median_step_s": t,
            "wall_vs_reference": t / base_t,
            "times_s": timings[name]["times_s"],
        }
    result["seconds"] = time.perf_counter() - started
    table = markdown_table(
        ["cut", "trainable (M)", "GFLOPs/step", "FLOPs vs ref", "median step (s)", "wall vs ref"],
        rows,
    )
    print(table)
    write_result("tune_top", result, table)


if __name__ == "__main__":
    main()
