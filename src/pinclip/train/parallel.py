"""How the ranks of a run hold the model: DDP (a replica each) or FSDP2 (shards).

`distributed: ddp` (default) wraps the model in `DistributedDataParallel`: every rank holds
the whole model and gradients are all-reduced. `distributed: fsdp` shards it with
`torch.distributed.fsdp.fully_shard` (FSDP2, per-parameter DTensor shards), for a model
that does not fit one GPU: each transformer layer of a VLM backbone (transformers'
`_no_split_modules`: decoder layers, vision blocks) is one shard group, the rest (heads,
norms) the root's; a layer's weights are gathered for its forward and backward and freed
after, gradients are reduce-scattered (the mean over ranks, as DDP's). The temperature and
bias scalars stay replicated (FSDP2 shards no 0-dim parameter); their gradients are
all-reduced here. The same loss code runs on both: it only needs the gathered embeddings.

Checkpoints, `best/` and `final/` are full (unsharded) state dicts gathered to rank 0 with
`torch.distributed.checkpoint.state_dict` (every rank takes part), so a run sharded over N
ranks resumes on M ranks or with DDP, and its model folders load with `from_pretrained`.
A resume loads the full state into the unsharded model before it is sharded, and the
optimizer state through `set_optimizer_state_dict`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def _replicated(model: nn.Module) -> list[nn.Parameter]:
    """Parameters FSDP2 cannot shard (0-dim): kept whole on every rank."""
    return [p for p in model.parameters() if p.ndim == 0]


def shard_groups(model: nn.Module) -> list[nn.Module]:
    """The modules that become one FSDP2 group each: a VLM's transformer layers, or any
    `nn.TransformerEncoderLayer` of the hybrid towers."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or [])
    return [
        m
        for m in model.modules()
        if type(m).__name__ in names or isinstance(m, nn.TransformerEncoderLayer)
    ]


def fully_shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Shard `model` in place over every rank (FSDP2); returns it."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for module in shard_groups(model):
        fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh, ignored_params=set(_replicated(model)))
    return model


def wrap(model: nn.Module, strategy: str, world: int, device: torch.device) -> nn.Module:
    """What the step calls: the model itself (one rank, or sharded in place) or its DDP."""
    if world == 1:
        return model
    if strategy == "fsdp":
        return fully_shard_model(model, device)
    return nn.parallel.DistributedDataParallel(model)


@contextlib.contextmanager
def no_sync(wrapped: nn.Module, strategy: str, sync: bool) -> Iterator[None]:
    """Gradients are reduced over ranks only when `sync` (a step's last micro-batch)."""
    if sync:
        yield
    elif strategy == "fsdp":
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
    else:
        with wrapped.no_sync():
            yield


def reduce_replicated_grads(model: nn.Module, strategy: str, world: int) -> None:
    """FSDP2: the mean over ranks of the unsharded scalars' gradients (DDP does its own)."""
    if strategy != "fsdp" or world == 1:
        return
    for p in _replicated(model):
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def as_float(value: Any) -> float:
    """A number that may be a (replicated) DTensor, e.g. FSDP2's gradient norm."""
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return float(value)


def full_model_state(model: nn.Module, strategy: str, world: int) -> dict[str, torch.Tensor]:
    """The unsharded state dict on rank 0 (FSDP2: every rank must call; others get {})."""
    if strategy != "fsdp" or world == 1:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def full_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, strategy: str, world: int
) -> dict[str, Any]:
    if strategy != "fsdp" or world == 1:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    strategy: str,
    world: int,
) -> None:
    if strategy != "fsdp" or world == 1:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, optimizer, state, options=options)
