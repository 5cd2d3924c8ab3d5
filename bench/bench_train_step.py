"""Training step: our trainer (λ=0 and full PinCLIP) against open_clip's step, side by side.

    python bench/bench_train_step.py --config configs/emoji-small.yaml

Contenders, each timed for `--steps` optimizer steps per repeat, repeats interleaved:
- `pinclip_full`: `pinclip.train.step.step_loss` with the config's objective (λ = 1),
  data from `BatchPlan` + `PinInputs` (frozen-tower features cached once), AdamW, grad clip.
- `pinclip_l0`: the same with `loss.nbr_weight=0` (plain CLIP + fusion).
- `open_clip`: open_clip's own recipe on the same backbones, batch and warm pins: the
  `pinclip-lite0-minilm` CLIP built by the evaluation baseline (EfficientNet-Lite0 + MiniLM-L6,
  locked towers but for the last trunk stage), open_clip `ClipLoss`, AdamW, fed by a torch
  DataLoader decoding the images (open_clip has no frozen-feature cache).
- `pinclip_towers_clip_loss`: PinCLIP's towers on the cached inputs, driven by open_clip's
  `ClipLoss` on image/text embeddings + AdamW: the loop with the data advantage removed.
The full / λ=0 cost is also given in FLOPs per step (FlopCounterMode over one step, forward
and backward): the same on any machine. Data-loader wait = time spent producing the batch (BatchPlan + PinInputs.batch; the
DataLoader's `next()` for open_clip) over the step time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch.utils.flop_counter import FlopCounterMode

from _common import REPEATS, interleaved, markdown_table, write_result
from pinclip.model.inputs import PinInputs
from pinclip.train.config import load_config
from pinclip.train.data import BatchPlan, load_training_data
from pinclip.train.loader import MicroBatch
from pinclip.train.recipe import build_model
from pinclip.train.step import step_loss


class TimedInputs:
    """PinInputs whose `.batch` adds its wall time to `.seconds` (the data-loader wait)."""

    def __init__(self, inputs: PinInputs) -> None:
        self.inputs, self.seconds = inputs, 0.0

    def batch(self, idx: np.ndarray) -> dict:
        start = time.perf_counter()
        out = self.inputs.batch(idx)
        self.seconds += time.perf_counter() - start
        return out


def adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


class PinclipStep:
    """k optimizer steps of our recipe; `.wait` and `.total` accumulate seconds."""

    def __init__(self, cfg, data, inputs: PinInputs, clip_loss=None) -> None:
        self.cfg, self.data = cfg, data
        self.model = build_model(cfg.model, seed=cfg.seed, loss_kind=cfg.loss.kind)
        self.model.train()
        self.inputs = TimedInputs(inputs)
        self.plan = BatchPlan(anchors=data.split.warm, batch_size=cfg.batch_size, seed=cfg.seed)
        self.opt = adamw(self.model.param_groups(cfg.optim.weight_decay), cfg.optim.lr)
        self.loss_cfg = cfg.loss.for_model(self.model.config.matryoshka_dims)
        self.clip_loss, self.step, self.wait, self.total = clip_loss, 0, 0.0, 0.0

    def one(self) -> None:
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        anchors, neighbors = self.plan.global_batch(self.step, self.data)
        self.wait += time.perf_counter() - t0
        if self.clip_loss is None:
            mb = MicroBatch.unloaded(self.step, anchors, neighbors)
            loss, _ = step_loss(self.model, self.inputs, self.data, mb, self.loss_cfg)
        else:
            out = self.model(**self.inputs.batch(anchors))
            loss = self.clip_loss(out.image_emb, out.text_emb, self.model.logit_scale.exp())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.opt.step()
        self.step += 1
        self.total += time.perf_counter() - start

    def data_seconds(self) -> float:
        return self.wait + self.inputs.seconds


class OpenClipStep:
    """k steps of open_clip's recipe: DataLoader -> CLIP -> ClipLoss -> AdamW."""

    def __init__(self, cfg, data, workdir: Path) -> None:
        from open_clip import ClipLoss

        from pinclip.evaluate.baselines.open_clip import (
            _Collate,
            _WarmPins,
            create_open_clip,
            open_clip_config,
            open_clip_param_groups,
        )
        from pinclip.model import preset_info

        info = preset_info(cfg.model.preset)
        config = open_clip_config(embed_dim=info["embed_dim"], image_size=info["image_size"])
        self.model, train_tf, _, tok = create_open_clip(workdir, config)
        self.model.lock_image_tower(unlocked_groups=1, freeze_bn_stats=True)
        self.model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
        self.model.train()
        dataset = _WarmPins(data, data.split.warm, train_tf, tok)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(cfg.seed),
            num_workers=0,
            collate_fn=_Collate(tok.tokenizer.pad_token_id),
        )
        self.batches = iter(self.loader)
        self.opt = adamw(open_clip_param_groups(self.model, cfg.optim.weight_decay), cfg.optim.lr)
        self.loss, self.grad_clip = ClipLoss(), cfg.optim.grad_clip
        self.wait, self.total = 0.0, 0.0

    def one(self) -> None:
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        try:
            images, texts = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            images, texts = next(self.batches)
        self.wait += time.perf_counter() - start
        out = self.model(images, texts)
        loss = self.loss(out["image_features"], out["text_features"], out["logit_scale"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        self.total += time.perf_counter() - start

    def data_seconds(self) -> float:
        return self.wait


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/emoji-small.yaml")
    ap.add_argument("--steps", type=int, default=1, help="optimizer steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-open-clip", action="store_true")
    args = ap.parse_args()
    console = Console()
    torch.set_num_threads(args.threads)
    full_cfg = load_config(args.config)
    l0_cfg = load_config(args.config, ["loss.nbr_weight=0"])
    data = load_training_data(full_cfg.data, console=Console(quiet=True))
    probe = build_model(full_cfg.model, seed=full_cfg.seed, loss_kind=full_cfg.loss.kind)
    inputs = PinInputs.prepare(
        probe,
        data,
        cache_dir=Path(full_cfg.data.cache_dir),
        device=torch.device("cpu"),
        console=Console(quiet=True),
    )
    from open_clip import ClipLoss

    steppers = {
        "pinclip_full": PinclipStep(full_cfg, data, inputs),
        "pinclip_l0": PinclipStep(l0_cfg, data, inputs),
        "pinclip_towers_clip_loss": PinclipStep(l0_cfg, data, inputs, clip_loss=ClipLoss()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_open_clip:
            steppers["open_clip"] = OpenClipStep(full_cfg, data, Path(tmp))

        def run(s):
            return lambda: [s.one() for _ in range(args.steps)]

        console.print(f"timing {list(steppers)}: {args.repeats} × {args.steps} steps each")
        for s in steppers.values():  # warm-up outside the accounting
            s.one()
            s.wait = s.total = 0.0
            if isinstance(s, PinclipStep):
                s.inputs.seconds = 0.0
        timings = interleaved({k: run(s) for k, s in steppers.items()}, args.repeats, warmup=0)
    flops = {}  # machine-independent cross-check of the cost ratio (wall time is noisy here)
    for name, s in steppers.items():
        if isinstance(s, PinclipStep):
            counter = FlopCounterMode(display=False)
            with counter:
                s.one()
            flops[name] = counter.get_total_flops()
    batch = full_cfg.batch_size
    rows, result = [], {"config": args.config, "batch_size": batch, "steps_per_repeat": args.steps}
    for name, s in steppers.items():
        rate = batch * args.steps / timings[name]["median_s"]
        share = s.data_seconds() / s.total
        result[name] = {**timings[name], "samples_per_s": rate, "data_wait_share": share}
        rows.append([name, rate, timings[name]["median_s"] / args.steps * 1000, f"{share:.1%}"])
    l0, full = result["pinclip_l0"], result["pinclip_full"]
    ratios = {
        "full_over_l0_cost": full["median_s"] / l0["median_s"],
        "full_over_l0_flops": flops["pinclip_full"] / flops["pinclip_l0"],
    }
    result["flops_per_step"] = flops
    if "open_clip" in result:
        ratios["l0_over_open_clip_samples_per_s"] = (
            l0["samples_per_s"] / result["open_clip"]["samples_per_s"]
        )
        ratios["towers_clip_loss_over_open_clip"] = (
            result["pinclip_towers_clip_loss"]["samples_per_s"]
            / result["open_clip"]["samples_per_s"]
        )
    ratios["l0_over_towers_clip_loss"] = (
        l0["samples_per_s"] / result["pinclip_towers_clip_loss"]["samples_per_s"]
    )
    result["ratios"] = ratios
    table = markdown_table(["contender", "samples/s", "ms/step", "data wait share"], rows)
    table += "\n" + markdown_table(["ratio", "value"], [[k, v] for k, v in ratios.items()])
    console.print(table)
    write_result("train_step", result, table)


if __name__ == "__main__":
    main()
