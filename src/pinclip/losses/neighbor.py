"""L_nbr: anchor {pin, image, text} ↔ the pin embedding of its sampled board neighbor, or,
with board-aware batches (`neighbors_in_batch`), ↔ the other anchors it shares a board with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pinclip.distributed import all_gather_with_grad

from .inputs import TermBatch, embedding

if TYPE_CHECKING:
    from . import LossConfig

__all__ = ["NBR_TERMS", "neighbor_loss"]

NBR_TERMS = ("pin_pin", "image_pin", "text_pin")
_SOURCES = {"pin_pin": "pin_emb", "image_pin": "image_emb", "text_pin": "text_emb"}


def neighbor_loss(batch: TermBatch, cfg: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """The mean over `cfg.nbr_terms`; co-board columns are never negatives, logQ optional."""
    inputs, b, dim, dev = batch.inputs, batch.b, batch.dim, batch.device
    if inputs.neighbors_in_batch:
        nbr_pin = embedding(inputs.anchor, "pin_emb", "anchor")
    else:
        assert inputs.neighbor is not None
        nbr_pin = embedding(inputs.neighbor, "pin_emb", "neighbor")
    if nbr_pin.shape != (b, dim):
        raise ValueError(f"pinclip_loss: neighbor.pin_emb {tuple(nbr_pin.shape)} != {(b, dim)}")
    n_all = batch.n_all
    none = torch.zeros(n_all, n_all, dtype=torch.bool, device=dev)
    co = batch.rows_or("co_board", torch.bool, none, columns=True)
    valid = batch.rows_or("has_neighbor", torch.bool, batch.all_rows)
    lq = batch.log_q("log_q", "logq")
    eye = torch.eye(n_all, dtype=torch.bool, device=dev)
    if inputs.neighbors_in_batch:  # positives: the other anchors on a board; never itself
        nbr_all = batch.anchor_all("pin_emb")
        positives, exclude = co & ~eye, eye | (batch.same & ~co)
    elif cfg.nbr_positives == "board":  # its neighbor and every co-board neighbor column
        nbr_all = all_gather_with_grad(nbr_pin)
        positives, exclude = eye | co, torch.zeros_like(co)
    else:  # its neighbor only; co-board columns are neither positive nor negative
        nbr_all = all_gather_with_grad(nbr_pin)
        positives, exclude = eye, co
    losses, parts = [], {}
    for name in cfg.nbr_terms:
        src = batch.anchor_all(_SOURCES[name])
        rows = valid & batch.texted if name == "text_pin" else valid
        loss, acc = batch.contrast(
            src,
            nbr_all,
            exclude=exclude,
            valid=rows,
            valid_b=valid,
            log_q_b=lq,
            positives=positives,
        )
        losses.append(loss)
        parts[f"nbr_{name}_acc"] = acc
    loss_nbr = torch.stack(losses).mean()
    parts["nbr"] = loss_nbr.item()
    return loss_nbr, parts
