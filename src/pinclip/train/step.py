"""What one micro-batch computes: its forward(s), its `LossInputs`, and the PinCLIP loss.

Anchors and neighbors are embedded in ONE forward (so BatchNorm-free towers see one batch and
DDP one graph); an anchor without a neighbor is embedded twice and its neighbor terms are
masked out (`has_neighbor`). With λ = 0 the neighbors are not embedded at all; with
`loss.nbr_detach` they are embedded in a second, gradient-free forward. Board-aware batches
(`in_batch`) hold their positives: the neighbor columns are every rank's anchors and there
is one forward. With the board term (`loss.board_weight` > 0) this rank's sampled boards are
embedded by the board tower in the same forward (`board_text_states` in the inputs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pinclip.distributed import get_rank, get_world_size
from pinclip.losses import LossConfig, LossInputs, pinclip_loss
from pinclip.model.inputs import PinInputs

from .data import TrainingData, rank_slice
from .loader import MicroBatch

__all__ = ["loss_inputs", "step_loss"]


def step_loss(
    model: torch.nn.Module,
    inputs: PinInputs,
    data: TrainingData,
    mb: MicroBatch,
    loss_cfg: LossConfig,
    *,
    in_batch: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The PinCLIP loss of this rank's micro-batch, and its float parts for logging.

    `mb.inputs` are the forward inputs the loader made (None: they are read here)."""
    batch = _forward_inputs(inputs, mb, loss_cfg, in_batch)
    anchor_out, neighbor_out = _forward(model, batch, len(mb.mine), loss_cfg, in_batch)
    core = model.module if hasattr(model, "module") else model  # under DDP, the wrapped model
    return pinclip_loss(
        loss_inputs(core, data, mb, anchor_out, neighbor_out, loss_cfg, in_batch=in_batch),
        loss_cfg,
    )


def loss_inputs(
    model: torch.nn.Module,
    data: TrainingData,
    mb: MicroBatch,
    anchor_out: Any,
    neighbor_out: Any,
    loss_cfg: LossConfig,
    *,
    in_batch: bool,
) -> LossInputs:
    """The `LossInputs` of micro-batch `mb` from the model's outputs and the training graph.

    A neighbor j that shares a board with anchor i is no negative for i (`co_board`, from the
    training graph only: held-out pins' edges never leak), duplicate content never either
    (`dup_ids`), and `log_q` is the neighbor's sampling popularity for the optional logQ
    correction. Image-only pins (`has_text` False) skip the terms that read their text. A
    board column j is no negative for anchor i when i is on it (`board_member`)."""
    anchors, neighbors = mb.mine, mb.my_neighbors
    fields: dict[str, Any] = dict(
        logit_scale=model.logit_scale,
        logit_bias=model.logit_bias,
        dup_ids=torch.as_tensor(data.dup_ids[anchors]),
        has_text=torch.as_tensor(data.has_text[anchors]),
        board_emb=anchor_out.board_emb,
    )
    if loss_cfg.board_weight > 0:
        all_boards = mb.boards
        assert all_boards is not None, "board_weight > 0 needs the sampled boards"
        my_boards = rank_slice(all_boards, get_rank(), get_world_size())
        member = data.board_edges[anchors][:, np.maximum(all_boards, 0)].toarray() > 0
        fields |= dict(
            board_member=torch.as_tensor(member & (all_boards >= 0)[None, :]),
            board_log_q=torch.as_tensor(data.board_log_q[np.maximum(my_boards, 0)]),
            has_board=torch.as_tensor(my_boards >= 0),
        )
    graph = data.split.train_graph
    if in_batch:  # P boards × K pins: the neighbors are the other anchors of the batch
        co_board = graph.co_board_mask(anchors, mb.anchors)
        return LossInputs(
            anchor_out, co_board=torch.as_tensor(co_board), neighbors_in_batch=True, **fields
        )
    columns = mb.neighbors  # every rank's neighbors, rank order (-1: none)
    co_board = graph.co_board_mask(anchors, np.where(columns >= 0, columns, 0))
    co_board &= (columns >= 0)[None, :]
    has_nbr = neighbors >= 0
    return LossInputs(
        anchor_out,
        neighbor_out,
        co_board=torch.as_tensor(co_board),
        log_q=torch.as_tensor(data.log_q[np.where(has_nbr, neighbors, anchors)]),
        has_neighbor=torch.as_tensor(has_nbr),
        **fields,
    )


def _forward_inputs(
    inputs: PinInputs, mb: MicroBatch, loss_cfg: LossConfig, in_batch: bool
) -> dict:
    """The forward inputs of [anchors, neighbor-or-self] (anchors alone for λ = 0 or
    `in_batch`) and this rank's boards, on the device."""
    if mb.inputs is not None:
        return inputs.to_device(mb.inputs)
    anchors, neighbors = mb.mine, mb.my_neighbors
    pins = anchors
    if loss_cfg.nbr_weight > 0 and not in_batch:
        pins = np.concatenate([anchors, np.where(neighbors >= 0, neighbors, anchors)])
    batch = inputs.batch(pins)
    if loss_cfg.board_weight > 0:
        assert mb.boards is not None, "board_weight > 0 needs the sampled boards"
        my_boards = rank_slice(mb.boards, get_rank(), get_world_size())
        batch |= inputs.to_device(inputs.cpu_board_batch(np.maximum(my_boards, 0)))
    return batch


def _forward(
    model: torch.nn.Module, batch: dict, b: int, loss_cfg: LossConfig, in_batch: bool
) -> tuple[Any, Any]:
    """(anchor outputs, neighbor outputs or None) of the micro-batch's forward(s)."""
    if in_batch:
        return model(**batch), None
    use_nbr = loss_cfg.nbr_weight > 0
    if use_nbr and loss_cfg.nbr_detach:
        board_keys = {k: batch.pop(k) for k in ("board_text", "board_text_states") if k in batch}
        anchor_out = model(**_rows(batch, slice(0, b)), **board_keys)
        with torch.no_grad():
            neighbor_out = model(**_rows(batch, slice(b, 2 * b)))
        return anchor_out, neighbor_out
    out = model(**batch)
    return out.rows(slice(0, b)), out.rows(slice(b, 2 * b)) if use_nbr else None


def _rows(batch: Any, rows: slice) -> Any:
    """Rows of a forward-inputs dict (tensors, lists and dicts of tensors)."""
    if isinstance(batch, dict):
        return {k: _rows(v, rows) for k, v in batch.items()}
    if isinstance(batch, list):
        return [_rows(v, rows) for v in batch]
    return batch[rows]
