"""L_board: anchor {pin, image} ↔ the board-tower embedding of one of its boards.

The (global) batch's boards are the candidates; sampled softmax with logQ over board
popularity (`board_logq`), a board the anchor is on is never its negative (`board_member`).
The board tower itself is `PinCLIP.board_embedding` (docs/objectives.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pinclip.distributed import all_gather_with_grad

from .inputs import TermBatch

if TYPE_CHECKING:
    from . import LossConfig

__all__ = ["BOARD_TERMS", "board_loss"]

BOARD_TERMS = ("pin_board", "image_board")
_SOURCES = {"pin_board": "pin_emb", "image_board": "image_emb"}


def board_loss(batch: TermBatch, cfg: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """The mean over `cfg.board_terms`; rows without a board (`has_board`) are skipped."""
    inputs, b, dim, dev = batch.inputs, batch.b, batch.dim, batch.device
    board_emb = inputs.board_emb
    assert board_emb is not None  # LOSS_TERMS: the board term needs board_emb
    if board_emb.shape != (b, dim):
        raise ValueError(f"pinclip_loss: board_emb {tuple(board_emb.shape)} != {(b, dim)}")
    board_all = all_gather_with_grad(board_emb)
    none = torch.zeros(batch.n_all, batch.n_all, dtype=torch.bool, device=dev)
    member = batch.rows_or("board_member", torch.bool, none, columns=True)
    boarded = batch.rows_or("has_board", torch.bool, batch.all_rows)
    lq = batch.log_q("board_log_q", "board_logq")
    losses, parts = [], {}
    for name in cfg.board_terms:
        loss, acc = batch.contrast(
            batch.anchor_all(_SOURCES[name]),
            board_all,
            exclude=member,
            valid=boarded,
            symmetric=cfg.board_symmetric,
            log_q_b=lq,
        )
        losses.append(loss)
        parts[f"board_{name}_acc"] = acc
    loss_board = torch.stack(losses).mean()
    parts["board"] = loss_board.item()
    return loss_board, parts
