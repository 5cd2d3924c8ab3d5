"""The training recipe: one readable loop, one process or `torchrun --nproc_per_node N`.

    pinclip train --config configs/emoji-small.yaml optim.lr=1e-3

`train()` is a few named set-up steps (devices, data, model, optimizer, resume) and then the
loop, one comment per step. Each step draws a global batch of warm anchors with one sampled
board neighbor each (`train.data`), embeds anchors and neighbors in a single forward, and
applies `pinclip.losses.pinclip_loss` (`_step_loss`). Resume is exact: model, optimizer,
scheduler, RNG and the step (which fixes the data order) are in every checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pinclip.errors import ConfigError, PinclipError
from pinclip.losses import LossConfig, pinclip_loss
from pinclip.model import PinCLIP
from pinclip.progress import Progress  # a Rich bar, or plain lines when stderr is a log
from pinclip.retrieval import embed_pins, related_pins_recall

from .checkpoint import atomic_save_pretrained, load_latest_checkpoint, save_checkpoint
from .config import TrainConfig, save_config
from .data import TrainingData, batch_plan, load_training_data, rank_slice
from .features import PinInputs
from .tracking import open_trackers


class TrainingError(PinclipError):
    """The run cannot go on (e.g. a NaN loss); the message says what to try."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    best_val_recall: float
    final_loss: float
    seconds: float


# ----- set-up steps ------------------------------------------------------------------------
def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device): one process, or one per GPU/CPU rank under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def build_model(cfg: TrainConfig) -> PinCLIP:
    """The preset with config overrides; the loss's unused temperature/bias is frozen."""
    torch.manual_seed(cfg.seed)
    model = PinCLIP.from_preset(cfg.model.preset, seed=cfg.seed, **dict(cfg.model.overrides))
    model.logit_bias.requires_grad_(cfg.loss.kind == "siglip")
    return model


def _lr_lambda(cfg: TrainConfig, total_steps: int):
    """Linear warm-up to optim.lr, then cosine decay to optim.min_lr_ratio × lr."""
    warm, floor = cfg.optim.warmup_steps, cfg.optim.min_lr_ratio

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min((step - warm) / max(total_steps - warm, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    cfg: TrainConfig, model: PinCLIP, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the model's own parameter groups, and the warm-up + cosine schedule."""
    optimizer = torch.optim.AdamW(
        model.param_groups(cfg.optim.weight_decay), lr=cfg.optim.lr, betas=(0.9, 0.98)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
    return optimizer, scheduler


def _resume(run_dir: Path, model: PinCLIP, optimizer, scheduler) -> tuple[int, float] | None:
    """Restore the newest complete checkpoint; (step, best val recall), None if there is none."""
    state = load_latest_checkpoint(run_dir)
    if state is None:
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    return state["step"], state["best_val_recall"]


def _progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


# ----- the run -----------------------------------------------------------------------------
def train(cfg: TrainConfig, *, resume: bool = False, console: Console | None = None) -> RunResult:
    """Run (or resume) a training run described by `cfg`; returns where it went and how well."""
    console = console or Console(stderr=True)
    rank, world, device = _setup_distributed(cfg)
    is_main = rank == 0
    say = console if is_main else Console(quiet=True)  # only rank 0 prints
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the {world} ranks")
    run_dir = Path(cfg.run_dir)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")  # the resolved config: what actually ran

    # data: catalog, split, neighbor sampler; model inputs (frozen features stored once)
    data = load_training_data(cfg.data, run_dir=run_dir, console=say)
    model = build_model(cfg).to(device)
    inputs = PinInputs.prepare(
        model,
        data,
        cache_dir=Path(cfg.data.cache_dir),
        device=device,
        console=say,
        feature_dtype=cfg.data.feature_dtype,
        workers=cfg.data.feature_workers,
    )
    plan = batch_plan(cfg, data)  # pairs (anchor + sampled neighbor) or P boards × K pins
    in_batch = cfg.data.batch == "boards"
    accum = cfg.optim.accum_steps
    total = cfg.max_steps or max(cfg.epochs * plan.steps_per_epoch // accum, 1)
    val_every = cfg.val_every or plan.steps_per_epoch
    ckpt_every = cfg.ckpt_every or plan.steps_per_epoch

    # optimizer and schedule; then pick up where a previous run of this run dir stopped
    optimizer, scheduler = build_optimizer(cfg, model, total)
    trainable = [p for p in model.parameters() if p.requires_grad]
    step, best = 0, -1.0
    if resume and (restored := _resume(run_dir, model, optimizer, scheduler)) is not None:
        step, best = restored
        say.print(f"resumed {run_dir} at step {step}")
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    loss_cfg = cfg.loss.for_model(model.config.matryoshka_dims)
    use_bf16 = device.type == "cuda"
    log = open_trackers(cfg, run_dir, step, enabled=is_main)  # metrics.jsonl, TensorBoard, MLflow

    started, loss_value = time.perf_counter(), float("nan")
    with _progress_bar(console, is_main) as progress:
        task = progress.add_task("train", total=total, completed=step, info="")
        while step < total:
            t0 = time.perf_counter()
            model.train()
            optimizer.zero_grad(set_to_none=True)
            # 1. forward + backward over `accum` micro-batches; their gradients add up
            for micro in range(accum):
                # the global batch is a pure function of (seed, step); this rank takes its share
                anchors, neighbors = plan.global_batch(step * accum + micro, data)
                mine, my_neighbors = (
                    rank_slice(anchors, rank, world),
                    rank_slice(neighbors, rank, world),
                )
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss, parts = _step_loss(
                        ddp,
                        inputs,
                        data,
                        mine,
                        my_neighbors,
                        loss_cfg,
                        anchors if in_batch else neighbors,
                        in_batch=in_batch,
                    )
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {step}; the last good checkpoint is kept in "
                        f"{run_dir / 'checkpoints'}. Try a lower optim.lr or optim.grad_clip, then --resume."
                    )
                (loss / accum).backward()  # DDP all-reduces (averages) gradients here
            # 2. clip the gradient norm, step the optimizer and the learning-rate schedule
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            # 3. log what one process on the whole global batch would log
            parts = _mean_over_ranks(parts, world)
            loss_value = parts.pop("loss")
            rate = cfg.batch_size * accum / (time.perf_counter() - t0)
            progress.update(
                task, completed=step, info=f"loss {loss_value:.3f}  {rate:.0f} samples/s"
            )
            log.write(
                {
                    "step": step,
                    "loss": loss_value,
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "samples_per_s": rate,
                    **parts,
                }
            )
            # 4. validate: best/ is the model with the best related-pins recall on val pins
            if step % val_every == 0 or step == total:
                recall = validation_recall(model, inputs, data) if is_main else 0.0
                log.write({"step": step, "val_recall@10": recall})
                if is_main and recall > best:
                    best = recall
                    atomic_save_pretrained(model, run_dir / "best")
            # 5. checkpoint everything an exact resume needs; a failed write keeps the last one
            if is_main and (step % ckpt_every == 0 or step == total):
                _save_checkpoint(cfg, run_dir, step, best, model, optimizer, scheduler, console)
            # 6. ranks wait for each other (rank 0 validated and wrote alone)
            if world > 1:
                dist.barrier()
    if world > 1:
        _check_ranks_in_sync(model)
    if is_main:
        atomic_save_pretrained(model, run_dir / "final")
        log.close()
    return RunResult(run_dir, step, best, loss_value, time.perf_counter() - started)


# ----- what one step computes --------------------------------------------------------------
def _step_loss(
    model: torch.nn.Module,
    inputs: PinInputs,
    data: TrainingData,
    anchors: np.ndarray,
    neighbors: np.ndarray,
    loss_cfg: LossConfig,
    all_neighbors: np.ndarray,
    *,
    in_batch: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The PinCLIP loss of this rank's micro-batch, and its float parts for logging.

    `anchors` / `neighbors` are this rank's rows (neighbor -1: the anchor has none);
    `all_neighbors` are every rank's neighbors in rank order, the columns the loss scores
    against. Anchors and neighbors are embedded in ONE forward (so BatchNorm-free towers see
    one batch and DDP one graph); an anchor without a neighbor is embedded twice and its
    neighbor terms are masked out (`has_neighbor`). A neighbor j that shares a board with
    anchor i is no negative for i (`co_board`, from the training graph only: held-out pins'
    edges never leak), duplicate content never either (`dup_ids`), and `log_q` is the
    neighbor's sampling popularity for the optional logQ correction. With λ = 0 the
    neighbors are not embedded at all; with `loss.nbr_detach` they are embedded in a second,
    gradient-free forward (no backward through them). Board-aware batches (`in_batch`) hold
    their positives: `all_neighbors` are then every rank's anchors and there is one forward.
    Image-only pins (`has_text` False) skip the terms that read their text.
    """
    b = len(anchors)
    has_text = torch.as_tensor(data.has_text[anchors])
    core = model.module if hasattr(model, "module") else model  # under DDP, the wrapped model
    common = dict(
        logit_scale=core.logit_scale,
        logit_bias=core.logit_bias,
        cfg=loss_cfg,
        dup_ids=torch.as_tensor(data.dup_ids[anchors]),
        has_text=has_text,
    )
    if in_batch:  # P boards × K pins: the neighbors are the other anchors of the batch
        co_board = data.split.train_graph.co_board_mask(anchors, all_neighbors)
        out = model(**inputs.batch(anchors))
        return pinclip_loss(
            out, None, co_board=torch.as_tensor(co_board), neighbors_in_batch=True, **common
        )
    has_nbr = neighbors >= 0
    nbr_or_self = np.where(has_nbr, neighbors, anchors)
    use_nbr = loss_cfg.nbr_weight > 0
    if use_nbr and loss_cfg.nbr_detach:
        anchor_out = model(**inputs.batch(anchors))
        with torch.no_grad():
            neighbor_out = model(**inputs.batch(nbr_or_self))
    else:
        out = model(**inputs.batch(np.concatenate([anchors, nbr_or_self]) if use_nbr else anchors))
        anchor_out = out.rows(slice(0, b))
        neighbor_out = out.rows(slice(b, 2 * b)) if use_nbr else None
    co_board = data.split.train_graph.co_board_mask(
        anchors, np.where(all_neighbors >= 0, all_neighbors, 0)
    )
    co_board &= (all_neighbors >= 0)[None, :]
    return pinclip_loss(
        anchor_out,
        neighbor_out,
        co_board=torch.as_tensor(co_board),
        log_q=torch.as_tensor(data.log_q[nbr_or_self]),
        has_neighbor=torch.as_tensor(has_nbr),
        **common,
    )


def validation_recall(model: PinCLIP, inputs: PinInputs, data: TrainingData, k: int = 10) -> float:
    """Related-pins Recall@k of the validation pins (fused pin_emb) against every pin;
    relevant = shares a board in the full graph (the report's related_warm/cold search)."""
    val = data.split.val
    if len(val) == 0:
        return 0.0
    pin = embed_pins(model, inputs, np.arange(data.n_pins), keys=("pin_emb",))["pin_emb"]
    return related_pins_recall(pin[val], pin, data.graph, val, k=k)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}


def _save_checkpoint(cfg, run_dir, step, best, model, optimizer, scheduler, console) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "step": step,
        "best_val_recall": best,
        "config": asdict(cfg),
    }
    try:
        save_checkpoint(run_dir, step, state, cfg.keep_last)
    except OSError as err:
        console.print(
            f"[red]checkpoint at step {step} not written ({err}); the previous one is intact[/]"
        )


def _mean_over_ranks(parts: dict[str, float], world: int) -> dict[str, float]:
    """Loss parts averaged over ranks: what one process on the global batch would log."""
    if world == 1:
        return dict(parts)
    keys = sorted(parts)
    values = torch.tensor([parts[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return {k: v / world for k, v in zip(keys, values.tolist(), strict=True)}


def _check_ranks_in_sync(model: torch.nn.Module) -> None:
    """DDP keeps replicas identical; verify it rather than trust it (a cheap checksum)."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise TrainingError(f"ranks diverged: parameter checksums {[g.item() for g in gathered]}")
