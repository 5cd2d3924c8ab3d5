"""What the loss terms read: `LossInputs` (one rank's batch, as the caller gives it) and
`TermBatch` (the same, checked and gathered over ranks once, shared by every term)."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

from pinclip.distributed import all_gather_no_grad, all_gather_with_grad, get_world_size

from .contrastive import contrastive_term

if TYPE_CHECKING:
    from . import LossConfig

__all__ = ["Embeddings", "LossInputs", "TermBatch"]

Mask = Tensor | np.ndarray


class Embeddings(Protocol):
    """What the loss reads from a model output (pinclip.model.PinCLIPOutput fits)."""

    image_emb: Tensor | None
    text_emb: Tensor | None
    pin_emb: Tensor | None


@dataclass
class LossInputs:
    """One rank's batch as the loss terms read it; each term names the fields it needs
    (`LOSS_TERMS`), the others may stay None. Under DDP every field holds this rank's rows
    and has the same B on every rank.

    anchor / neighbor: objects with ``.image_emb``, ``.text_emb``, ``.pin_emb`` [B, D], row i of
    ``neighbor`` being the sampled board neighbor of anchor i (only ``pin_emb`` is read from it).
    logit_scale: log of the inverse temperature (clamped at log 100); logit_bias: SigLIP's bias.
    co_board: bool [B, B·world], True where local anchor i and neighbor j (of any rank, rank order)
        share a board: j is then no negative for i. Diagonal ignored.
    dup_ids: int [B], equal ids mark duplicate content: never each other's negatives.
    log_q: float [B], log sampling probability of each neighbor (used when ``cfg.logq``).
    has_neighbor: bool [B], False for anchors without a neighbor (skipped by L_nbr).
    has_text: bool [B], False for image-only pins: their rows (and columns) are left out of
        every term that reads ``text_emb`` (image↔text, fused↔text, text→neighbor).
    neighbors_in_batch: the batch holds its own positives (board-aware P×K batches): no
        ``neighbor`` rows; L_nbr aligns each anchor with the *other anchors* it shares a board
        with (``co_board`` is then [B, B·world] over anchors), so a step needs one forward.
    board_emb: [B, D], row i the board-tower embedding of a board anchor i is on (its
        positive). board_member: bool [B, B·world], True where local anchor i is on the board
        of column j (any rank): no negative. board_log_q: float [B], log sampling probability
        of each row's board (logQ). has_board: bool [B], False for anchors without a board.
    """

    anchor: Embeddings
    neighbor: Embeddings | None = None
    _: KW_ONLY
    logit_scale: Tensor
    logit_bias: Tensor | None = None
    co_board: Mask | None = None
    dup_ids: Mask | None = None
    log_q: Mask | None = None
    has_neighbor: Mask | None = None
    has_text: Mask | None = None
    neighbors_in_batch: bool = False
    board_emb: Tensor | None = None
    board_member: Mask | None = None
    board_log_q: Mask | None = None
    has_board: Mask | None = None

    def has(self, name: str) -> bool:
        """Whether field `name` is given (in-batch neighbors stand for `neighbor`)."""
        if name == "neighbor" and self.neighbors_in_batch:
            return True
        return getattr(self, name) is not None


def as_tensor(x, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> Tensor:
    """`x` as a tensor of `shape` and `dtype`, or a ValueError naming the input."""
    t = torch.as_tensor(x, device=device)
    if tuple(t.shape) != shape:
        raise ValueError(
            f"pinclip_loss: {name} has shape {tuple(t.shape)}, expected {shape} "
            "(this rank's rows; co_board columns span every rank's neighbors)"
        )
    return t.to(dtype)


def embedding(obj: Embeddings, field: str, who: str) -> Tensor:
    """``obj.field`` [batch, dim], or a ValueError naming what is missing."""
    t = getattr(obj, field, None)
    if t is None:
        raise ValueError(f"pinclip_loss: {who}.{field} is missing; the configured terms need it")
    if t.ndim != 2:
        raise ValueError(f"pinclip_loss: {who}.{field} must be [batch, dim], got {tuple(t.shape)}")
    return t


@dataclass
class TermBatch:
    """`LossInputs` checked, with what several terms share computed once: the Matryoshka
    prefixes, the duplicate and text masks and the anchors' embeddings gathered over ranks."""

    inputs: LossInputs
    cfg: LossConfig
    b: int  # this rank's rows
    dim: int
    dims: tuple[int, ...]  # Matryoshka prefixes, ascending
    n_all: int  # every rank's rows
    same: Tensor  # [N, N] duplicate content: never each other's negatives
    all_rows: Tensor  # [N] all True
    texted: Tensor  # [N] rows with text
    gathered: dict[str, Tensor] = field(default_factory=dict)  # anchor embeddings, every rank

    @classmethod
    def build(cls, inputs: LossInputs, cfg: LossConfig) -> TermBatch:
        anchor = inputs.anchor
        image, text = (
            embedding(anchor, "image_emb", "anchor"),
            embedding(anchor, "text_emb", "anchor"),
        )
        b, dim = image.shape
        dev = image.device
        if text.shape != image.shape:
            raise ValueError(
                f"pinclip_loss: anchor text_emb {tuple(text.shape)} != image_emb {(b, dim)}"
            )
        dims = tuple(sorted(set(cfg.matryoshka_dims))) or (dim,)
        if dims[-1] > dim:
            raise ValueError(
                f"pinclip_loss: matryoshka_dims {dims} exceed the embedding dim {dim}; "
                "set LossConfig.matryoshka_dims to the model's config.matryoshka_dims"
            )
        n_all = b * get_world_size()
        if inputs.dup_ids is None:
            same = torch.zeros(n_all, n_all, dtype=torch.bool, device=dev)
        else:
            ids = all_gather_no_grad(as_tensor(inputs.dup_ids, "dup_ids", (b,), torch.long, dev))
            same = ids[:, None] == ids[None, :]
        all_rows = torch.ones(n_all, dtype=torch.bool, device=dev)
        texted = all_rows
        if inputs.has_text is not None:
            texted = all_gather_no_grad(
                as_tensor(inputs.has_text, "has_text", (b,), torch.bool, dev)
            )
        batch = cls(inputs, cfg, b, dim, dims, n_all, same, all_rows, texted)
        batch.gathered["image_emb"] = all_gather_with_grad(image)
        batch.gathered["text_emb"] = all_gather_with_grad(text)
        return batch

    @property
    def device(self) -> torch.device:
        return self.all_rows.device

    @property
    def dtype(self) -> torch.dtype:
        return self.gathered["image_emb"].dtype

    def anchor_all(self, field: str) -> Tensor:
        """Every rank's anchor ``field`` embeddings (with gradient), gathered once per loss."""
        if field not in self.gathered:
            emb = all_gather_with_grad(embedding(self.inputs.anchor, field, "anchor"))
            if emb.shape != self.gathered["image_emb"].shape:
                raise ValueError(f"pinclip_loss: anchor {field} and image_emb shapes differ")
            self.gathered[field] = emb
        return self.gathered[field]

    def rows(self, name: str, dtype: torch.dtype, *, columns: bool = False) -> Tensor:
        """Input `name` ([B], or [B, B·world] with `columns`) of every rank, no gradient."""
        shape = (self.b, self.n_all) if columns else (self.b,)
        value = getattr(self.inputs, name)
        return all_gather_no_grad(as_tensor(value, name, shape, dtype, self.device))

    def rows_or(
        self, name: str, dtype: torch.dtype, default: Tensor, *, columns: bool = False
    ) -> Tensor:
        """`rows(name)`, or `default` when the optional input `name` was not given."""
        if getattr(self.inputs, name) is None:
            return default
        return self.rows(name, dtype, columns=columns)

    def log_q(self, name: str, flag: str) -> Tensor | None:
        """The logQ input `name` of every rank when `cfg.<flag>` is on (None when off)."""
        if not getattr(self.cfg, flag):
            return None
        if getattr(self.inputs, name) is None:
            raise ValueError(f"pinclip_loss: cfg.{flag}=True needs {name} (log sampling prob.)")
        return self.rows(name, self.dtype)

    def contrast(self, a: Tensor, b: Tensor, **kw) -> tuple[Tensor, float]:
        """`contrastive_term` of ``a`` ↔ ``b`` with this loss's prefixes, scale, bias and kind."""
        return contrastive_term(
            a,
            b,
            dims=self.dims,
            logit_scale=self.inputs.logit_scale,
            logit_bias=self.inputs.logit_bias,
            kind=self.cfg.kind,
            **kw,
        )
