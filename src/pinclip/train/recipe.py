"""The training recipe in three parts (torchtune's shape): `setup`, `loop`, `teardown`.

    pinclip train --config configs/emoji-small.yaml optim.lr=1e-3

`setup()` builds the named pieces of a run (`Run`: devices, data, model, optimizer, resume,
trackers, loader); `loop()` is one optimizer step per iteration, one comment per step, read in
one sitting; `teardown()` writes final/ and leaves the process group. One process, or
`torchrun --nproc_per_node N` (DDP replicas or FSDP2 shards). Each step draws a global batch
of warm anchors with one sampled board neighbor each (`train.data`), embeds anchors and
neighbors in a single forward and applies `pinclip.losses.pinclip_loss` (`train.step`).
Resume is exact: model, optimizer, scheduler, RNG and the step (which fixes the data order)
are in every checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pinclip.distributed import all_gather_rows, check_ranks_in_sync, mean_over_ranks
from pinclip.errors import ConfigError, PinclipError
from pinclip.losses import LossConfig
from pinclip.memory import bound_heap_growth
from pinclip.model import PinCLIP
from pinclip.model.devices import resolve_device
from pinclip.model.inputs import PinInputs
from pinclip.progress import Progress  # a Rich bar, or plain lines when stderr is a log
from pinclip.retrieval import embed_pins, exact_topk, related_pins_hits, retrieval_metrics

from .checkpoint import atomic_save_pretrained, load_latest_checkpoint, save_checkpoint
from .config import DataConfig, ModelConfig, OptimConfig, TrainConfig, save_config
from .data import BatchPlan, BoardBatchPlan, TrainingData, batch_plan, load_training_data
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
from .tracking import Trackers, open_trackers

__all__ = [
    "Run",
    "RunResult",
    "TrainingError",
    "autocast_dtype",
    "build_model",
    "build_optimizer",
    "loop",
    "setup",
    "teardown",
    "train",
    "validation_recall",
]


class TrainingError(PinclipError):
    """The run cannot go on (e.g. a NaN loss); the message says what to try."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    best_val_recall: float
    final_loss: float
    seconds: float


@dataclass
class Run:
    """The named pieces `setup` builds; `loop` and `teardown` read them (and move `step`)."""

    run_dir: Path
    console: Console  # the progress bar's
    rank: int
    world: int
    device: torch.device
    owns_group: bool  # this process started the process group (and ends it)
    strategy: str  # ddp or fsdp (under torchrun)
    data: TrainingData
    inputs: PinInputs  # model inputs: stored frozen features or images/tokens
    model: PinCLIP  # the model itself (sharded in place under FSDP2)
    wrapped: torch.nn.Module  # what runs the forward: DDP's wrapper or the model
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # autocast dtype; None: fp32
    loss_cfg: LossConfig  # with the model's Matryoshka prefixes
    in_batch: bool  # board-aware batches: the positives are in the batch
    batch_size: int
    accum: int  # micro-batches per optimizer step
    grad_clip: float
    total: int  # optimizer steps of the run
    val_every: int
    ckpt_every: int
    keep_last: int
    config: dict[str, Any]  # the resolved config, stored in every checkpoint
    log: Trackers
    batches: Iterator[MicroBatch]
    step: int = 0
    best: float = -1.0  # best validation recall so far
    loss_value: float = float("nan")
    started: float = 0.0  # perf_counter() when the loop began

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def train(cfg: TrainConfig, *, resume: bool = False, console: Console | None = None) -> RunResult:
    """Run (or resume) a training run described by `cfg`; returns where it went and how well."""
    run = setup(cfg, resume=resume, console=console)
    loop(run)
    return teardown(run)


# ----- 1. set-up ---------------------------------------------------------------------------
def setup(cfg: TrainConfig, *, resume: bool = False, console: Console | None = None) -> Run:
    """Devices, data, model, optimizer, resume, trackers and the loader of a run."""
    console = console or Console(stderr=True)
    rank, world, device, owns_group = _setup_distributed(cfg.device)
    say = console if rank == 0 else Console(quiet=True)  # only rank 0 prints
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the {world} ranks")
    run_dir = Path(cfg.run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")  # the resolved config: what actually ran

    # data: catalog, split, neighbor sampler; model inputs (frozen features stored once)
    data = load_training_data(cfg.data, run_dir=run_dir, console=say)
    bound_heap_growth(data.graph.n_pins)  # at scale freed step buffers go back to the kernel
    model = build_model(cfg.model, seed=cfg.seed, loss_kind=cfg.loss.kind).to(device)
    inputs = _prepare_inputs(model, data, cfg.data, device, say, boards=cfg.loss.board_weight > 0)
    plan = batch_plan(cfg, data)  # pairs (anchor + sampled neighbor) or P boards × K pins
    accum = cfg.optim.accum_steps
    # every count below is in optimizer steps (one step = `accum` micro-batches)
    steps_per_epoch = max(plan.steps_per_epoch // accum, 1)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch

    # pick up where a previous run of this run dir stopped: the weights go into the whole
    # model, then the ranks wrap it (DDP replicas or FSDP2 shards), then the optimizer is
    # built over the parameters the step will update and gets its state back
    state = load_latest_checkpoint(run_dir) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
    wrapped = wrap(model, cfg.distributed, world, device)
    optimizer, scheduler = build_optimizer(cfg.optim, model, total)
    amp_dtype = autocast_dtype(cfg.precision, device)
    # fp16 needs loss scaling (its range underflows small gradients); bf16 and fp32 do not
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    trainable = [p for p in model.parameters() if p.requires_grad]
    step, best, loss_value = 0, -1.0, float("nan")
    if state is not None:
        step, best, loss_value = _resume(
            state, wrapped, optimizer, scheduler, scaler, cfg.distributed, world
        )
        say.print(f"resumed {run_dir} at step {step}")
    del state
    loss_cfg = cfg.loss.for_model(model.config.matryoshka_dims)
    log = open_trackers(  # metrics.jsonl, TensorBoard, MLflow
        run_dir,
        step,
        enabled=rank == 0,
        tensorboard=cfg.tensorboard,
        mlflow=cfg.mlflow,
        params=asdict(cfg),
    )

    # the loader: micro-batches from the resumed step on, made ahead by worker processes
    # (none for a run killed after its last checkpoint: it only has final/ left to write)
    in_batch = cfg.data.batch == "boards"
    batches: Iterator[MicroBatch] = iter(())
    if step >= total:
        say.print(f"all {total} steps were done; writing {run_dir / 'final'} from step {step}")
    else:
        batches = _loader(
            plan,
            data,
            inputs,
            cfg.data,
            loss_cfg,
            step * accum,
            total * accum,
            rank=rank,
            world=world,
            in_batch=in_batch,
        )
    return Run(
        run_dir=run_dir,
        console=console,
        rank=rank,
        world=world,
        device=device,
        owns_group=owns_group,
        strategy=cfg.distributed,
        data=data,
        inputs=inputs,
        model=model,
        wrapped=wrapped,
        trainable=trainable,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=amp_dtype,
        loss_cfg=loss_cfg,
        in_batch=in_batch,
        batch_size=cfg.batch_size,
        accum=accum,
        grad_clip=cfg.optim.grad_clip,
        total=total,
        val_every=cfg.val_every or steps_per_epoch,
        ckpt_every=cfg.ckpt_every or steps_per_epoch,
        keep_last=cfg.keep_last,
        config=asdict(cfg),
        log=log,
        batches=batches,
        step=step,
        best=best,
        loss_value=loss_value,
        started=time.perf_counter(),
    )


# ----- 2. the loop -------------------------------------------------------------------------
def loop(run: Run) -> None:
    """Optimizer steps from `run.step` to `run.total`: forward and backward, step, log,
    validate, checkpoint."""
    with _progress_bar(run.console, run.is_main) as progress:
        task = progress.add_task("train", total=run.total, completed=run.step, info="")
        while run.step < run.total:
            t0 = time.perf_counter()
            run.model.train()
            run.optimizer.zero_grad(set_to_none=True)
            # 1. forward + backward over `accum` micro-batches; their gradients add up
            summed, waited = _accumulate(run)
            # 2. clip the gradient norm, step the optimizer and the learning-rate schedule
            reduce_replicated_grads(run.model, run.strategy, run.world)  # FSDP2's scalars
            run.scaler.unscale_(run.optimizer)  # clip the true gradients (no-op without fp16)
            grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, run.grad_clip)
            run.scaler.step(run.optimizer)  # skipped if fp16 gradients overflowed (scale drops)
            run.scaler.update()
            run.scheduler.step()
            run.step += 1
            # 3. log what one process on the whole global batch would log (mean of micro-batches)
            parts = mean_over_ranks(summed, run.world)
            run.loss_value = parts.pop("loss")
            seconds = time.perf_counter() - t0
            rate = run.batch_size * run.accum / seconds
            info = f"loss {run.loss_value:.3f}  {rate:.0f} samples/s"
            progress.update(task, completed=run.step, info=info)
            run.log.write(
                {
                    "step": run.step,
                    "loss": run.loss_value,
                    "lr": run.scheduler.get_last_lr()[0],
                    "grad_norm": as_float(grad_norm),
                    "samples_per_s": rate,
                    "loader_wait_share": waited / seconds,
                    **parts,
                }
            )
            # 4. validate: best/ is the model with the best related-pins recall on val pins
            if run.step % run.val_every == 0 or run.step == run.total:
                _validate(run)
            # 5. checkpoint everything an exact resume needs; a failed write keeps the last one
            if run.step % run.ckpt_every == 0 or run.step == run.total:
                _checkpoint(run)
            # 6. ranks wait for each other (rank 0 wrote the checkpoint alone)
            if run.world > 1:
                dist.barrier()


# ----- 3. teardown -------------------------------------------------------------------------
def teardown(run: Run) -> RunResult:
    """Stop the loader, write final/, close the trackers, leave the process group together."""
    run.batches = iter(())  # the loader's worker processes stop now, not at interpreter exit
    if run.world > 1 and run.strategy == "ddp":
        check_ranks_in_sync(run.model)  # FSDP2 ranks hold different shards by design
    weights = full_model_state(run.model, run.strategy, run.world)  # every rank (FSDP)
    if run.is_main:
        atomic_save_pretrained(run.model, run.run_dir / "final", _own(weights, run.strategy))
    run.log.close()
    if run.world > 1:
        dist.barrier()  # no rank returns before final/ exists
    if run.owns_group:
        # joins the backend's threads while Python is alive: left to interpreter exit, a gloo
        # thread can free a tensor after finalization began and abort the process
        # ("terminate called without an active exception")
        dist.destroy_process_group()
    seconds = time.perf_counter() - run.started
    return RunResult(run.run_dir, run.step, run.best, run.loss_value, seconds)


# ----- set-up helpers ----------------------------------------------------------------------
def _setup_distributed(device_name: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call started the process group): one process,
    or one per GPU/CPU rank under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and device_name.startswith("cuda:"):
        raise ConfigError("under torchrun use device=cuda (each rank takes its LOCAL_RANK GPU)")
    if world > 1 and device_name == "mps":
        raise ConfigError("device=mps runs one process; DDP needs cpu (gloo) or cuda (nccl)")
    device = torch.device(resolve_device(device_name, local if world > 1 else None))
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


def build_model(model_cfg: ModelConfig, *, seed: int, loss_kind: str = "infonce") -> PinCLIP:
    """The preset with config overrides; the loss's unused temperature/bias is frozen."""
    torch.manual_seed(seed)
    model = PinCLIP.from_preset(model_cfg.preset, seed=seed, **dict(model_cfg.overrides))
    model.logit_bias.requires_grad_(loss_kind == "siglip")
    return model


def _prepare_inputs(
    model: PinCLIP,
    data: TrainingData,
    data_cfg: DataConfig,
    device: torch.device,
    console: Console,
    *,
    boards: bool,
) -> PinInputs:
    """The model inputs of every pin: frozen features computed once into the store."""
    return PinInputs.prepare(
        model,
        data,
        cache_dir=Path(data_cfg.cache_dir),
        device=device,
        console=console,
        feature_dtype=data_cfg.feature_dtype,
        text_compute=data_cfg.feature_text_compute,
        workers=data_cfg.feature_workers,
        boards=boards,
    )


def _lr_lambda(optim: OptimConfig, total_steps: int):
    """Linear warm-up to optim.lr, then cosine decay to optim.min_lr_ratio × lr."""
    warm, floor = optim.warmup_steps, optim.min_lr_ratio

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min((step - warm) / max(total_steps - warm, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    optim: OptimConfig, model: PinCLIP, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the model's own parameter groups, and the warm-up + cosine schedule."""
    optimizer = torch.optim.AdamW(
        model.param_groups(optim.weight_decay, tuned_lr=optim.tuned_lr),
        lr=optim.lr,
        betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(optim, total_steps))
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


def _loader(
    plan: BatchPlan | BoardBatchPlan,
    data: TrainingData,
    inputs: PinInputs,
    data_cfg: DataConfig,
    loss_cfg: LossConfig,
    start: int,
    stop: int,
    *,
    rank: int,
    world: int,
    in_batch: bool,
) -> Iterator[MicroBatch]:
    """This rank's micro-batches `start … stop-1`, made ahead by `data.loader_workers`."""
    workers = default_workers(inputs) if data_cfg.loader_workers < 0 else data_cfg.loader_workers
    return micro_batches(
        plan,
        data,
        inputs,
        start=start,
        stop=stop,
        rank=rank,
        world=world,
        with_neighbors=loss_cfg.nbr_weight > 0 and not in_batch,
        with_boards=loss_cfg.board_weight > 0,
        workers=workers,
        prefetch=data_cfg.prefetch,
    )


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


# ----- loop helpers ------------------------------------------------------------------------
def _accumulate(run: Run) -> tuple[dict[str, float], float]:
    """Forward and backward of one step's `accum` micro-batches; (their mean loss parts,
    seconds waited for the loader)."""
    summed: dict[str, float] = {}
    waited = 0.0
    for micro in range(run.accum):
        # the global batch is a pure function of (seed, step); this rank gets its share
        t_wait = time.perf_counter()
        mb = next(run.batches)
        waited += time.perf_counter() - t_wait
        # DDP all-reduces gradients only on the last micro-batch (no_sync before it)
        last = micro == run.accum - 1
        amp = run.amp_dtype
        with (
            no_sync(run.wrapped, run.strategy, sync=run.world == 1 or last),
            torch.autocast(run.device.type, dtype=amp, enabled=amp is not None),
        ):
            loss, parts = step_loss(
                run.wrapped, run.inputs, run.data, mb, run.loss_cfg, in_batch=run.in_batch
            )
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {run.step}; the last good checkpoint is "
                    f"kept in {run.run_dir / 'checkpoints'}. Try a lower optim.lr or "
                    "optim.grad_clip, then --resume."
                )
            run.scaler.scale(loss / run.accum).backward()
        for key, value in parts.items():
            summed[key] = summed.get(key, 0.0) + value / run.accum
    return summed, waited


def _validate(run: Run) -> None:
    """Log the validation recall; a new best is written to best/."""
    recall = validation_recall(run.model, run.inputs, run.data, rank=run.rank, world=run.world)
    run.log.write({"step": run.step, "val_recall@10": recall})
    if recall > run.best:  # the same all-reduced figure on every rank
        run.best = recall
        weights = full_model_state(run.model, run.strategy, run.world)  # every rank (FSDP)
        if run.is_main:
            atomic_save_pretrained(run.model, run.run_dir / "best", _own(weights, run.strategy))


def _checkpoint(run: Run) -> None:
    """Everything an exact resume needs; rank 0 writes it (every rank gathers under FSDP)."""
    weights = full_model_state(run.model, run.strategy, run.world)
    optim_state = full_optimizer_state(run.wrapped, run.optimizer, run.strategy, run.world)
    if not run.is_main:
        return
    state = {
        "model": weights,
        "optimizer": optim_state,
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),  # {} unless fp16
        "rng": _rng_state(),
        "step": run.step,
        "best_val_recall": run.best,
        "loss": run.loss_value,  # what a resumed run reports when no step is left to run
        "config": run.config,
    }
    try:
        save_checkpoint(run.run_dir, run.step, state, run.keep_last)
    except OSError as err:
        run.console.print(
            f"[red]checkpoint at step {run.step} not written ({err}); the previous one is intact[/]"
        )


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
    # float16: every pin's embedding is held (and all-gathered) at half the memory; scores
    # are float32
    pin = embed_pins(model, inputs, padded, keys=("pin_emb",), dtype=torch.float16)["pin_emb"]
    pin = pin[: len(mine)]
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
