"""Two gloo ranks with features gathered with gradient give the one-process loss and gradients."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pinclip.distributed import (
    RanksDivergedError,
    all_gather_no_grad,
    all_gather_rows,
    all_gather_with_grad,
    check_ranks_in_sync,
    get_rank,
    get_world_size,
    mean_over_ranks,
)
from pinclip.losses import LossConfig, LossInputs, pinclip_loss

WORLD, LOCAL, N = 2, 4, 8  # ranks, rows per rank, global batch
KINDS = ("infonce", "siglip")


class Encoder(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.image, self.text = nn.Linear(12, 16), nn.Linear(10, 16)
        self.fuse = nn.Linear(32, 16)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # DDP needs every parameter to get a gradient: InfoNCE has no bias
        self.logit_bias = nn.Parameter(torch.tensor(-3.0)) if kind == "siglip" else None

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> SimpleNamespace:
        img, txt = self.image(image_feats), self.text(text_feats)
        pin = self.fuse(torch.cat([img, txt], dim=-1))
        return SimpleNamespace(
            image_emb=F.normalize(img, dim=-1),
            text_emb=F.normalize(txt, dim=-1),
            pin_emb=F.normalize(pin, dim=-1),
        )


def make_batch() -> dict[str, torch.Tensor]:
    """The global batch: anchors' and neighbors' raw features plus masks; rank r owns rows
    [r·LOCAL, (r+1)·LOCAL)."""
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(N, 12, generator=g),
        "text": torch.randn(N, 10, generator=g),
        "nbr_image": torch.randn(N, 12, generator=g),
        "nbr_text": torch.randn(N, 10, generator=g),
        "co_board": torch.rand(N, N, generator=g) < 0.25,
        "dup_ids": torch.tensor([0, 1, 2, 0, 3, 4, 1, 5]),  # duplicates across ranks too
        "log_q": torch.log(torch.rand(N, generator=g) * 0.1 + 0.01),
        "has_neighbor": torch.tensor(
            [True, True, False, True, True, True, True, True]
        ),  # 3 vs 4 rows
    }


def run(kind: str, rows: slice, ddp: bool) -> dict:
    """Loss, input gradients and parameter gradients for ``rows`` of the global batch."""
    torch.manual_seed(0)
    model = Encoder(kind)
    if ddp:
        model = DistributedDataParallel(model)
    encoder = model.module if ddp else model
    batch = make_batch()
    leaves = {
        k: batch[k][rows].clone().requires_grad_(True)
        for k in ("image", "text", "nbr_image", "nbr_text")
    }
    out = model(
        torch.cat([leaves["image"], leaves["nbr_image"]]),
        torch.cat([leaves["text"], leaves["nbr_text"]]),
    )
    b = rows.stop - rows.start
    anchor = SimpleNamespace(**{k: v[:b] for k, v in vars(out).items()})
    neighbor = SimpleNamespace(pin_emb=out.pin_emb[b:])
    cfg = LossConfig(kind=kind, fuse_weight=0.5, nbr_weight=1.0, logq=True, matryoshka_dims=(8, 16))
    loss, parts = pinclip_loss(
        LossInputs(
            anchor,
            neighbor,
            logit_scale=encoder.logit_scale,
            logit_bias=encoder.logit_bias,
            co_board=batch["co_board"][rows],  # this rank's anchors vs every rank's neighbors
            dup_ids=batch["dup_ids"][rows],
            log_q=batch["log_q"][rows],
            has_neighbor=batch["has_neighbor"][rows],
        ),
        cfg,
    )
    loss.backward()
    return {
        "loss": loss.item(),
        "parts": parts,
        "inputs": {k: v.grad.clone() for k, v in leaves.items()},
        "params": {k: p.grad.clone() for k, p in encoder.named_parameters()},
    }


def worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        assert (get_rank(), get_world_size()) == (rank, WORLD)
        x = torch.full((2, 3), float(rank), requires_grad=True)
        gathered = all_gather_with_grad(x)
        flags = all_gather_no_grad(torch.tensor([rank == 0, True]))
        checks = {"gathered": gathered.detach().clone(), "flags": flags}
        # the recipe's collectives: ragged rows (rank 0: 3 rows, rank 1: 2), logged means
        checks["rows"] = all_gather_rows(torch.full((3 - rank, 2), float(rank)), [3, 2])
        checks["mean"] = mean_over_ranks({"loss": float(rank), "acc": 1.0}, WORLD)
        same = nn.Linear(2, 2)
        nn.init.constant_(same.weight, 1.0)
        nn.init.constant_(same.bias, 0.0)
        check_ranks_in_sync(same)  # identical replicas: no error
        nn.init.constant_(same.weight, float(rank))
        try:
            check_ranks_in_sync(same)
            checks["diverged"] = False
        except RanksDivergedError:
            checks["diverged"] = True
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        results = {kind: run(kind, rows, ddp=True) for kind in KINDS}
        torch.save({"checks": checks, "results": results}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("gloo")
    # fork: the worker lives in this test module, which spawned children could not import
    mp.start_processes(worker, args=(free_port(), str(out_dir)), nprocs=WORLD, start_method="fork")
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def test_not_distributed_is_identity() -> None:
    x = torch.randn(3, 2)
    assert all_gather_with_grad(x) is x and all_gather_no_grad(x) is x
    assert (get_rank(), get_world_size()) == (0, 1)


def test_gather_concatenates_in_rank_order(two_rank_results: list[dict]) -> None:
    for res in two_rank_results:
        torch.testing.assert_close(
            res["checks"]["gathered"], torch.tensor([[0.0] * 3] * 2 + [[1.0] * 3] * 2)
        )
        assert res["checks"]["flags"].tolist() == [True, True, False, True]
        assert res["checks"]["rows"].tolist() == [[0.0, 0.0]] * 3 + [[1.0, 1.0]] * 2
        assert res["checks"]["mean"] == {"acc": 1.0, "loss": 0.5}
        assert res["checks"]["diverged"]


@pytest.mark.parametrize("kind", KINDS)
def test_two_ranks_match_one_process(two_rank_results: list[dict], kind: str) -> None:
    torch.set_num_threads(1)
    single = run(kind, slice(0, N), ddp=False)
    ranks = [res["results"][kind] for res in two_rank_results]

    # the global loss is the mean of the rank losses (what DDP's gradient averaging optimises)
    assert sum(r["loss"] for r in ranks) / WORLD == pytest.approx(single["loss"], abs=1e-5)
    for part in ("it", "fuse", "nbr"):
        mean = sum(r["parts"][part] for r in ranks) / WORLD
        assert mean == pytest.approx(single["parts"][part], abs=1e-5)
    # each rank's inputs get d(Σ_ranks loss)/dx = WORLD · d(global loss)/dx
    for name, grad in single["inputs"].items():
        combined = torch.cat([r["inputs"][name] for r in ranks]) / WORLD
        torch.testing.assert_close(combined, grad, atol=1e-5, rtol=0)
        assert grad.abs().max() > 1e-3
    # DDP averages the parameter gradients: both ranks hold exactly the one-process gradient
    for name, grad in single["params"].items():
        for r in ranks:
            torch.testing.assert_close(r["params"][name], grad, atol=1e-5, rtol=0)
