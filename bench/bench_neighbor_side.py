"""Cost of the neighbor side: one optimizer step per objective, FLOPs and wall time side by side.

    python bench/bench_neighbor_side.py --config configs/emoji-small.yaml

Contenders (same model, batch, cached inputs; only the objective/batch switches differ):
- `l0`: λ = 0 (image-text + fusion terms only): the reference;
- `pairs`: the config's λ with one sampled neighbor per anchor, embedded in the same forward
  (a second row per anchor, forward and backward);
- `pairs_detach`: the same, neighbors embedded in a gradient-free forward (`loss.nbr_detach`);
- `boards`: board-aware P×K batches (`data.batch=boards`): the positives are in the batch, one
  forward, neighbor terms on the anchors themselves;
- `l0_board`, `pairs_board`: λ = 0 and pairs with the board tower (`loss.board_weight=1`: one
  board title per anchor through the text tower in the same forward).
`--only l0,pairs,...` measures a subset (`l0` is always in: the ratios are to it).
FLOPs (torch FlopCounterMode over one step, forward + backward) are machine-independent; wall
times are medians of interleaved repeats (A, B, C, D, A, ...), reported as ratios to `l0`.
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
from pinclip.train.data import anchor_boards, batch_plan, load_training_data
from pinclip.train.loader import MicroBatch
from pinclip.train.recipe import build_model
from pinclip.train.step import step_loss

CONTENDERS = {
    "l0": ["loss.nbr_weight=0"],
    "pairs": [],
    "pairs_detach": ["loss.nbr_detach=true"],
    "boards": ["data.batch=boards"],
    "l0_board": ["loss.nbr_weight=0", "loss.board_weight=1"],
    "pairs_board": ["loss.board_weight=1"],
}


class Step:
    def __init__(self, cfg, data, inputs) -> None:
        self.cfg, self.data, self.inputs = cfg, data, inputs
        self.model = build_model(cfg.model, seed=cfg.seed, loss_kind=cfg.loss.kind).train()
        self.plan = batch_plan(cfg, data)
        self.in_batch = cfg.data.batch == "boards"
        self.opt = torch.optim.AdamW(self.model.param_groups(cfg.optim.weight_decay), lr=1e-4)
        self.loss_cfg = cfg.loss.for_model(self.model.config.matryoshka_dims)
        self.step = 0

    def one(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        anchors, neighbors = self.plan.global_batch(self.step, self.data)
        boards = None
        if self.loss_cfg.board_weight > 0:
            boards = anchor_boards(self.plan, self.data, anchors, self.step)
        mb = MicroBatch.unloaded(self.step, anchors, neighbors, boards)
        loss, _ = step_loss(
            self.model, self.inputs, self.data, mb, self.loss_cfg, in_batch=self.in_batch
        )
        loss.backward()
        self.opt.step()
        self.step += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/emoji-small.yaml")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    ap.add_argument("--out", default="neighbor_side", help="bench/results/<OUT>.json and .md")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every contender")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = ["l0", *(k for k in args.only.split(",") if k != "l0")]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contenders {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
    cfgs = {k: load_config(args.config, [*args.overrides, *CONTENDERS[k]]) for k in names}
    data = load_training_data(cfgs["l0"].data, console=Console(quiet=True))
    inputs = PinInputs.prepare(
        build_model(cfgs["l0"].model, seed=cfgs["l0"].seed, loss_kind=cfgs["l0"].loss.kind),
        data,
        cache_dir=Path(cfgs["l0"].data.cache_dir),
        device=torch.device("cpu"),
        console=Console(quiet=True),
        boards=any(c.loss.board_weight > 0 for c in cfgs.values()),
    )
    steps = {k: Step(c, data, inputs) for k, c in cfgs.items()}
    flops = {}
    for name, s in steps.items():
        counter = FlopCounterMode(display=False)
        with counter:
            s.one()
        flops[name] = counter.get_total_flops()
    started = time.perf_counter()
    timings = interleaved({k: s.one for k, s in steps.items()}, args.repeats, warmup=1)
    base_t, base_f = timings["l0"]["median_s"], flops["l0"]
    rows, result = [], {"config": args.config, "overrides": args.overrides, "contenders": {}}
    for name in steps:
        t, f = timings[name]["median_s"], flops[name]
        rows.append([name, f / 1e9, f / base_f, t, t / base_t])
        result["contenders"][name] = {
            "gflops_per_step": f / 1e9,
            "flops_vs_l0": f / base_f,
            "median_step_s": t,
            "wall_vs_l0": t / base_t,
            "times_s": timings[name]["times_s"],
        }
    result["seconds"] = time.perf_counter() - started
    table = markdown_table(
        ["objective", "GFLOPs/step", "FLOPs vs λ=0", "median step (s)", "wall vs λ=0"], rows
    )
    print(table)
    write_result(args.out, result, table)


if __name__ == "__main__":
    main()
