"""The training recipe: one readable loop, one process or `torchrun --nproc_per_node N`.

    pinclip train --config configs/emoji-small.yaml optim.lr=1e-3

`train()` is a few named set-up steps (devices, data, model, optimizer, resume) and then the
loop, one comment per step. Each step draws a global batch of warm anchors with one sampled
board neighbor each (`train.data`), embeds anchors and neighbors in a single forward, and
applies `pinclip.losses.pinclip_loss` (`train.step.step_loss`). Resume is exact: model, optimizer,
scheduler, RNG and the step (which fixes the data order) are in every checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pinclip.distributed import all_gather_rows, check_ranks_in_sync, mean_over_ranks
from pinclip.errors import ConfigError, PinclipError
from pinclip.memory import bound_heap_growth
from pinclip.model import PinCLIP
from pinclip.model.devices import resolve_device
from pinclip.model.inputs import PinInputs
from pinclip.progress import Progress  # a Rich bar, or plain lines when stderr is a log
from pinclip.retrieval import embed_pins, exact_topk, related_pins_hits, retrieval_metrics

from .checkpoint import atomic_save_pretrained, load_latest_checkpoint, save_checkpoint
from .config import TrainConfig, save_config
from .data import TrainingData, batch_plan, load_training_data
from .loader import MicroBatch, default_workers, micro_batches
from .parallel import (
    as_float,
    full_model_state,
    full_optimizer_state,
    load_optimizer_state,
    no_sync,
    reduce_replicated_grads,
    wrap,
)
from .step import step_loss
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
def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call started the process group): one process,
    or one per GPU/CPU rank under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and cfg.device.startswith("cuda:"):
        raise ConfigError("under torchrun use device=cuda (each rank takes its LOCAL_RANK GPU)")
    if world > 1 and cfg.device == "mps":
        raise ConfigError("device=mps runs one process; DDP needs cpu (gloo) or cuda (nccl)")
    device = torch.device(resolve_device(cfg.device, local if world > 1 else None))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    started = world > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device, started


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` (None: fp32, no autocast); auto = bf16 on CUDA."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ConfigError(f"precision={precision!r}: use auto, fp32, bf16 or fp16")
    return dtypes[precision]


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
        model.param_groups(cfg.optim.weight_decay, tuned_lr=cfg.optim.tuned_lr),
        lr=cfg.optim.lr,
        betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
    return optimizer, scheduler


def _resume(
    state: dict, wrapped: torch.nn.Module, optimizer, scheduler, scaler, strategy: str, world: int
) -> tuple[int, float, float]:
    """Restore the optimizer, schedule, scaler and RNG of checkpoint `state` (the model's
    weights were loaded before it was wrapped); (step, best val recall, that step's loss)."""
    load_optimizer_state(wrapped, optimizer, state["optimizer"], strategy, world)
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    if state["rng"].get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state["step"], state["best_val_recall"], state.get("loss", float("nan"))


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
    rank, world, device, owns_group = _setup_distributed(cfg)
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
    bound_heap_growth(data.graph.n_pins)  # at scale freed step buffers go back to the kernel
    model = build_model(cfg).to(device)
    inputs = PinInputs.prepare(
        model,
        data,
        cache_dir=Path(cfg.data.cache_dir),
        device=device,
        console=say,
        feature_dtype=cfg.data.feature_dtype,
        workers=cfg.data.feature_workers,
        boards=cfg.loss.board_weight > 0,
    )
    plan = batch_plan(cfg, data)  # pairs (anchor + sampled neighbor) or P boards × K pins
    in_batch = cfg.data.batch == "boards"
    accum = cfg.optim.accum_steps
    # every count below is in optimizer steps (one step = `accum` micro-batches)
    steps_per_epoch = max(plan.steps_per_epoch // accum, 1)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    val_every = cfg.val_every or steps_per_epoch
    ckpt_every = cfg.ckpt_every or steps_per_epoch

    # pick up where a previous run of this run dir stopped: the weights go into the whole
    # model, then the ranks wrap it (DDP replicas or FSDP2 shards), then the optimizer is
    # built over the parameters the step will update and gets its state back
    strategy = cfg.distributed
    state = load_latest_checkpoint(run_dir) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
    ddp = wrap(model, strategy, world, device)
    optimizer, scheduler = build_optimizer(cfg, model, total)
    amp_dtype = autocast_dtype(cfg.precision, device)
    # fp16 needs loss scaling (its range underflows small gradients); bf16 and fp32 do not
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    trainable = [p for p in model.parameters() if p.requires_grad]
    step, best, loss_value = 0, -1.0, float("nan")
    if state is not None:
        step, best, loss_value = _resume(state, ddp, optimizer, scheduler, scaler, strategy, world)
        say.print(f"resumed {run_dir} at step {step}")
    del state
    loss_cfg = cfg.loss.for_model(model.config.matryoshka_dims)
    log = open_trackers(cfg, run_dir, step, enabled=is_main)  # metrics.jsonl, TensorBoard, MLflow

    # the loader: micro-batches from the resumed step on, made ahead by worker processes
    # (none for a run killed after its last checkpoint: it only has final/ left to write)
    batches: Iterator[MicroBatch] = iter(())
    if step >= total:
        say.print(f"all {total} steps were done; writing {run_dir / 'final'} from step {step}")
    else:
        workers = (
            default_workers(inputs) if cfg.data.loader_workers < 0 else cfg.data.loader_workers
        )
        batches = micro_batches(
            plan,
            data,
            inputs,
            start=step * accum,
            stop=total * accum,
            rank=rank,
            world=world,
            with_neighbors=loss_cfg.nbr_weight > 0 and not in_batch,
            with_boards=loss_cfg.board_weight > 0,
            workers=workers,
            prefetch=cfg.data.prefetch,
        )

    started = time.perf_counter()
    with _progress_bar(console, is_main) as progress:
        task = progress.add_task("train", total=total, completed=step, info="")
        while step < total:
            t0 = time.perf_counter()
            model.train()
            optimizer.zero_grad(set_to_none=True)
            # 1. forward + backward over `accum` micro-batches; their gradients add up
            summed: dict[str, float] = {}
            waited = 0.0  # seconds this step waited for the loader
            for micro in range(accum):
                # the global batch is a pure function of (seed, step); this rank gets its share
                t_wait = time.perf_counter()
                mb = next(batches)
                waited += time.perf_counter() - t_wait
                # DDP all-reduces gradients only on the last micro-batch (no_sync before it)
                last = micro == accum - 1
                with (
                    no_sync(ddp, strategy, sync=world == 1 or last),
                    torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None),
                ):
                    loss, parts = step_loss(ddp, inputs, data, mb, loss_cfg, in_batch=in_batch)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss became {loss.item()} at step {step}; the last good checkpoint is kept in "
                            f"{run_dir / 'checkpoints'}. Try a lower optim.lr or optim.grad_clip, then --resume."
                        )
                    scaler.scale(loss / accum).backward()
                for key, value in parts.items():
                    summed[key] = summed.get(key, 0.0) + value / accum
            # 2. clip the gradient norm, step the optimizer and the learning-rate schedule
            reduce_replicated_grads(model, strategy, world)  # FSDP2's unsharded scalars
            scaler.unscale_(optimizer)  # clip the true gradients (a no-op without fp16)
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.grad_clip)
            scaler.step(optimizer)  # skipped if fp16 gradients overflowed; the scale then drops
            scaler.update()
            scheduler.step()
            step += 1
            # 3. log what one process on the whole global batch would log (mean of micro-batches)
            parts = mean_over_ranks(summed, world)
            loss_value = parts.pop("loss")
            seconds = time.perf_counter() - t0
            rate = cfg.batch_size * accum / seconds
            progress.update(
                task, completed=step, info=f"loss {loss_value:.3f}  {rate:.0f} samples/s"
            )
            log.write(
                {
                    "step": step,
                    "loss": loss_value,
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": as_float(grad_norm),
                    "samples_per_s": rate,
                    "loader_wait_share": waited / seconds,
                    **parts,
                }
            )
            # 4. validate: best/ is the model with the best related-pins recall on val pins
            if step % val_every == 0 or step == total:
                recall = validation_recall(model, inputs, data, rank=rank, world=world)
                log.write({"step": step, "val_recall@10": recall})
                if recall > best:  # the same all-reduced figure on every rank
                    best = recall
                    weights = full_model_state(model, strategy, world)  # every rank (FSDP)
                    if is_main:
                        atomic_save_pretrained(model, run_dir / "best", _own(weights, strategy))
            # 5. checkpoint everything an exact resume needs; a failed write keeps the last one
            if step % ckpt_every == 0 or step == total:
                weights = full_model_state(model, strategy, world)  # every rank (FSDP)
                optim_state = full_optimizer_state(ddp, optimizer, strategy, world)
                if is_main:
                    _save_checkpoint(
                        cfg,
                        run_dir,
                        step,
                        best,
                        loss_value,
                        weights,
                        optim_state,
                        scheduler,
                        scaler,
                        console,
                    )
            # 6. ranks wait for each other (rank 0 wrote the checkpoint alone)
            if world > 1:
                dist.barrier()
    del batches  # the loader's worker processes stop now, not at interpreter exit
    # the end: final/ is written, then every rank leaves the process group together
    if world > 1 and strategy == "ddp":
        check_ranks_in_sync(model)  # FSDP2 ranks hold different shards by design
    weights = full_model_state(model, strategy, world)  # every rank (FSDP)
    if is_main:
        atomic_save_pretrained(model, run_dir / "final", _own(weights, strategy))
    log.close()
    if world > 1:
        dist.barrier()  # no rank returns before final/ exists
    if owns_group:
        # joins the backend's threads while Python is alive: left to interpreter exit, a gloo
        # thread can free a tensor after finalization began and abort the process
        # ("terminate called without an active exception")
        dist.destroy_process_group()
    return RunResult(run_dir, step, best, loss_value, time.perf_counter() - started)


# ----- validation ------------------------------------------------------------------------
def validation_recall(
    model: PinCLIP,
    inputs: PinInputs,
    data: TrainingData,
    k: int = 10,
    *,
    rank: int = 0,
    world: int = 1,
) -> float:
    """Related-pins Recall@k of the validation pins (fused pin_emb) against every pin;
    relevant = shares a board in the full graph (the report's related_warm/cold search).

    Under DDP every rank embeds its share of the pins and scores its share of the queries;
    the embeddings are all-gathered and the recall sums all-reduced, so each rank returns
    what one process computes (no rank waits at a barrier while rank 0 embeds everything)."""
    val = data.split.val
    if len(val) == 0:
        return 0.0
    shares = np.array_split(np.arange(data.n_pins), world)
    mine = shares[rank]
    # every rank runs the same number of forwards (an FSDP2 forward gathers across ranks)
    longest = max(len(s) for s in shares)
    padded = np.concatenate([mine, np.repeat(mine[-1:], longest - len(mine))])
    pin = embed_pins(model, inputs, padded, keys=("pin_emb",))["pin_emb"][: len(mine)]
    if world > 1:
        pin = all_gather_rows(pin, [len(p) for p in np.array_split(np.arange(data.n_pins), world)])
    queries = np.array_split(val, world)[rank]
    top = exact_topk(pin[queries], pin, k, exclude=queries)
    hits, n_rel = related_pins_hits(data.graph, queries, top)
    recall = retrieval_metrics(hits, n_rel, ks=(k,))[f"recall@{k}"]
    totals = torch.tensor([recall.sum(), len(recall)], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(totals)
    return float(totals[0] / totals[1]) if totals[1] else 0.0


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # dropout on the GPU resumes exactly
    return state


def _own(weights: dict, strategy: str) -> dict | None:
    """The gathered weights to write for FSDP2; None: the model writes its own state."""
    return weights if strategy == "fsdp" else None


def _save_checkpoint(
    cfg, run_dir, step, best, loss, weights, optim_state, scheduler, scaler, console
) -> None:
    state = {
        "model": weights,
        "optimizer": optim_state,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),  # {} unless fp16
        "rng": _rng_state(),
        "step": step,
        "best_val_recall": best,
        "loss": loss,  # what a resumed run reports when no step is left to run
        "config": asdict(cfg),
    }
    try:
        save_checkpoint(run_dir, step, state, cfg.keep_last)
    except OSError as err:
        console.print(
            f"[red]checkpoint at step {step} not written ({err}); the previous one is intact[/]"
        )
