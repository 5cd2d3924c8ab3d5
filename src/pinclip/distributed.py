"""Rank/world helpers, an all-gather that keeps the autograd graph, and the collectives the
training recipe uses (ragged row gathers, logged means, a replica checksum).

Contrastive losses need every rank's embeddings as candidates (more negatives), but each rank
must still get gradients for the rows it produced. ``all_gather_with_grad`` does what open_clip's
``gather_with_grad`` does: forward is an all-gather, backward sums the gradient every rank computed
for each slice and hands each rank the sum for its own rows.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from pinclip.errors import PinclipError

__all__ = [
    "RanksDivergedError",
    "all_gather_no_grad",
    "all_gather_rows",
    "all_gather_with_grad",
    "check_ranks_in_sync",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "mean_over_ranks",
]


class RanksDivergedError(PinclipError):
    """DDP replicas that should be identical are not (a bug, or ranks fed different data)."""


def is_distributed() -> bool:
    """True when a default process group is up and has more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of ranks, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate ``x`` from all ranks along dim 0; backward returns this rank's slice of the
    all-reduced (summed) gradient. All-reduce works on every backend (gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 (rank order), differentiable; ``x`` itself when
    not distributed. Every rank must pass the same shape (use ``drop_last`` in the sampler)."""
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x)


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` (masks, ids, log-probabilities) concatenated along dim 0, no gradient."""
    if not is_distributed():
        return x
    wire = x.to(torch.uint8) if x.dtype == torch.bool else x.contiguous()  # gloo has no bool
    parts = [torch.empty_like(wire) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, wire)
    return torch.cat(parts, dim=0).to(x.dtype)


def all_gather_rows(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows of `x` (rank r has `sizes[r]` rows), concatenated in rank order."""
    padded = torch.zeros(max(sizes), *x.shape[1:], dtype=x.dtype)
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


def mean_over_ranks(parts: dict[str, float], world: int) -> dict[str, float]:
    """Loss parts averaged over ranks: what one process on the global batch would log."""
    if world == 1:
        return dict(parts)
    keys = sorted(parts)
    values = torch.tensor([parts[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return {k: v / world for k, v in zip(keys, values.tolist(), strict=True)}


def check_ranks_in_sync(model: torch.nn.Module) -> None:
    """DDP keeps replicas identical; verify it rather than trust it (a cheap checksum)."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RanksDivergedError(
            f"ranks diverged: parameter checksums {[g.item() for g in gathered]}"
        )
