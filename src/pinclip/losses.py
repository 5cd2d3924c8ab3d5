"""PinCLIP objectives: L = L_it + a·L_fuse + λ·L_nbr (the math is in docs/objectives.md).

Every term is a contrastive loss between two embedding sets over in-batch candidates:
- ``it``:   image ↔ text of the same pin (CLIP).
- ``fuse``: fused pin ↔ its own image, and fused pin ↔ its own text.
- ``nbr``:  anchor {pin, image, text} ↔ the pin embedding of its sampled board neighbor.
- ``board``: anchor {pin, image} ↔ the board-tower embedding of one of its boards (the
  batch's boards are the candidates; sampled softmax with logQ over board popularity).

Each term is averaged over Matryoshka prefixes and, under DDP, scores this rank's rows against
every rank's columns (features gathered with gradient), scaled so DDP's gradient averaging gives
exactly the one-process gradient of the global-batch loss.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pinclip.distributed import (
    all_gather_no_grad,
    all_gather_with_grad,
    get_rank,
    get_world_size,
)
from pinclip.errors import ConfigError

__all__ = [
    "BOARD_TERMS",
    "NBR_TERMS",
    "Embeddings",
    "LossConfig",
    "contrastive_logits",
    "pinclip_loss",
]

NBR_TERMS = ("pin_pin", "image_pin", "text_pin")
BOARD_TERMS = ("pin_board", "image_board")
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature never below 0.01


class Embeddings(Protocol):
    """What the loss reads from a model output (pinclip.model.PinCLIPOutput fits)."""

    image_emb: Tensor | None
    text_emb: Tensor | None
    pin_emb: Tensor | None


@dataclass
class LossConfig:
    """Weights and options of the PinCLIP objective: training's `loss:` config section is
    this dataclass. ``nbr_weight=0`` is plain CLIP (+ fusion)."""

    kind: Literal["infonce", "siglip"] = (
        "infonce"  # contrastive form of every term: softmax InfoNCE or sigmoid SigLIP
    )
    fuse_weight: float = 0.5  # a: weight of L_fuse, the pin ↔ its own image and text
    nbr_weight: float = 1.0  # λ; 0 is the plain CLIP-style objective
    nbr_terms: tuple[str, ...] = NBR_TERMS  # L_nbr terms: anchor pin / image / text ↔ neighbor pin
    logq: bool = False  # subtract log P(drawn as a neighbor) from the anchor→neighbor logits
    #: Matryoshka prefixes every term is averaged over. Empty: the model's own
    #: (`PinCLIPConfig.matryoshka_dims`, see `for_model`); a bare `pinclip_loss` call with
    #: empty dims uses the full embedding dimension only.
    matryoshka_dims: tuple[int, ...] = ()
    #: "pair": each anchor's one sampled neighbor is its positive, other co-board columns are
    #: only masked out of the negatives; "board": every in-batch column that shares a board
    #: with the anchor is a positive too (multi-positive, SupCon-style mean over positives).
    nbr_positives: Literal["pair", "board"] = "pair"
    #: no backward through the neighbor rows (a second, gradient-free forward embeds them):
    #: the anchors still learn from them, at about 4/6 of a full pairwise step's compute
    nbr_detach: bool = False
    #: β: pin ↔ board alignment with the board tower (a board's title through the text
    #: tower); 0 is off. Each anchor's positive is one of its training-graph boards, the
    #: candidates are the (global) batch's boards
    board_weight: float = 0.0
    board_terms: tuple[str, ...] = BOARD_TERMS  # L_board terms: anchor pin / image ↔ board
    #: subtract log P(board sampled) from the anchor→board logits (sampled softmax)
    board_logq: bool = True
    #: also the board→anchor direction (InfoNCE); False: pin→board only
    board_symmetric: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("infonce", "siglip"):
            raise ConfigError(f"LossConfig.kind must be 'infonce' or 'siglip', got {self.kind!r}")
        if self.fuse_weight < 0 or self.nbr_weight < 0 or self.board_weight < 0:
            raise ConfigError("LossConfig.fuse_weight, nbr_weight and board_weight must be >= 0")
        bad = set(self.board_terms) - set(BOARD_TERMS)
        if bad:
            raise ConfigError(f"LossConfig.board_terms: unknown {sorted(bad)}; use {BOARD_TERMS}")
        unknown = set(self.nbr_terms) - set(NBR_TERMS)
        if unknown:
            raise ConfigError(f"LossConfig.nbr_terms: unknown {sorted(unknown)}; use {NBR_TERMS}")
        if self.nbr_positives not in ("pair", "board"):
            raise ConfigError(
                f"LossConfig.nbr_positives must be 'pair' or 'board', got {self.nbr_positives!r}"
            )
        if any(d <= 0 for d in self.matryoshka_dims):
            raise ConfigError("LossConfig.matryoshka_dims must be positive")

    def for_model(self, matryoshka_dims: tuple[int, ...]) -> LossConfig:
        """This config with empty `matryoshka_dims` filled in by the model's own."""
        if self.matryoshka_dims:
            return self
        return dataclasses.replace(self, matryoshka_dims=tuple(matryoshka_dims))


def contrastive_logits(
    q: Tensor,
    k: Tensor,
    logit_scale: Tensor,
    *,
    logit_bias: Tensor | None = None,
    exclude: Tensor | None = None,
    log_q: Tensor | None = None,
) -> Tensor:
    """Logits ``exp(s)·q·kᵀ (+ b) - log_q[j]``, excluded pairs set to -inf.

    This is exactly what the losses score (public so diagnostics and tests can see it).
    ``exclude`` [Bq, Bk] marks pairs that are neither positive nor negative; ``log_q`` [Bk] is the
    log sampling probability of candidate j (sampled-softmax / logQ correction, Yi et al. 2019).
    """
    logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * (q @ k.T)
    if logit_bias is not None:
        logits = logits + logit_bias
    if log_q is not None:
        logits = logits - log_q[None, :]
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return logits


def _direction(
    q: Tensor,
    k: Tensor,
    pos: Tensor,
    exclude: Tensor,
    rows: Tensor,
    *,
    logit_scale: Tensor,
    logit_bias: Tensor | None,
    kind: str,
    log_q: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Summed loss and top-1 hits of local queries ``q`` [b, d] against all keys ``k`` [N, d].

    ``pos`` [b, N] bool marks each row's positive columns (one per row: plain InfoNCE; several:
    the mean of their log-softmax, SupCon's "outside" form); ``exclude`` [b, N] (positives
    already cleared); ``rows`` [b] the rows that count (each has at least one positive).
    """
    n_pos = pos.sum(dim=1).clamp(min=1)
    if kind == "infonce":
        logits = contrastive_logits(q, k, logit_scale, exclude=exclude, log_q=log_q)
        log_p = torch.log_softmax(logits, dim=1).masked_fill(~pos, 0.0)
        per_row = -log_p.sum(dim=1) / n_pos
    else:  # SigLIP: independent binary decisions; excluded pairs dropped from the sum
        logits = contrastive_logits(q, k, logit_scale, logit_bias=logit_bias, log_q=log_q)
        labels = pos.to(logits.dtype) * 2 - 1
        per_pair = -F.logsigmoid(labels * logits).masked_fill(exclude, 0.0)
        per_row = per_pair.sum(dim=1)
        logits = logits.masked_fill(exclude, float("-inf"))
    best = logits.argmax(dim=1)
    hits = pos[torch.arange(len(best), device=q.device), best] & rows
    return torch.where(rows, per_row, torch.zeros_like(per_row)).sum(), hits.sum()


def _term(
    a: Tensor,
    b: Tensor,
    *,
    exclude: Tensor,
    valid: Tensor,
    dims: tuple[int, ...],
    logit_scale: Tensor,
    logit_bias: Tensor | None,
    kind: str,
    log_q_b: Tensor | None,
    positives: Tensor | None = None,
    valid_b: Tensor | None = None,
    symmetric: bool = True,
) -> tuple[Tensor, float]:
    """Symmetric contrastive loss of gathered ``a`` [N, D] ↔ ``b`` [N, D] (row i ↔ row i positive),
    for this rank's rows, averaged over Matryoshka prefixes. Returns (loss, local top-1 of a→b).

    ``exclude`` [N, N]: pair (a_i, b_j) is not a negative. ``valid`` [N]: rows of ``a`` that
    exist, and of ``b`` too unless ``valid_b`` [N] says otherwise.
    ``log_q_b`` [N]: logQ of b's rows, applied where b are the candidates (a→b).
    ``positives`` [N, N]: pair (a_i, b_j) is a positive (default: the diagonal only).
    ``symmetric=False``: InfoNCE's a→b direction only.
    """
    n_all, world, rank = a.shape[0], get_world_size(), get_rank()
    local = n_all // world
    lo, hi = rank * local, (rank + 1) * local
    dev = a.device
    valid_b = valid if valid_b is None else valid_b
    if positives is None:
        positives = torch.eye(n_all, dtype=torch.bool, device=dev)
    positives = positives & valid[:, None] & valid_b[None, :]
    pos_ab, pos_ba = positives[lo:hi], positives.T[lo:hi]
    ex_ab = (exclude[lo:hi] | ~valid_b[None, :]) & ~pos_ab
    ex_ba = (exclude.T[lo:hi] | ~valid[None, :]) & ~pos_ba
    rows = valid[lo:hi] & pos_ab.any(dim=1)
    # mean over the global batch: this rank's sum / (global count / world); DDP then averages
    denom = positives.any(dim=1).sum().clamp(min=1).to(a.dtype) / world
    kw = dict(logit_scale=logit_scale, logit_bias=logit_bias, kind=kind)

    total = a.new_zeros(())
    for d in dims:  # ascending: the hits kept are those of the largest prefix
        ad, bd = F.normalize(a[:, :d], dim=-1), F.normalize(b[:, :d], dim=-1)
        loss, hits = _direction(ad[lo:hi], bd, pos_ab, ex_ab, rows, log_q=log_q_b, **kw)
        if kind == "infonce" and symmetric:  # reverse; candidates a are not popularity-sampled
            rows_ba = valid_b[lo:hi] & pos_ba.any(dim=1)
            loss_ba, _ = _direction(bd[lo:hi], ad, pos_ba, ex_ba, rows_ba, log_q=None, **kw)
            loss = (loss + loss_ba) / 2
        total = total + loss / denom
    return total / len(dims), hits.item() / max(int(rows.sum()), 1)


def _as_tensor(x, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> Tensor:
    t = torch.as_tensor(x, device=device)
    if tuple(t.shape) != shape:
        raise ValueError(
            f"pinclip_loss: {name} has shape {tuple(t.shape)}, expected {shape} "
            "(this rank's rows; co_board columns span every rank's neighbors)"
        )
    return t.to(dtype)


def _emb(obj: Embeddings, field: str, who: str) -> Tensor:
    t = getattr(obj, field, None)
    if t is None:
        raise ValueError(f"pinclip_loss: {who}.{field} is missing; the configured terms need it")
    if t.ndim != 2:
        raise ValueError(f"pinclip_loss: {who}.{field} must be [batch, dim], got {tuple(t.shape)}")
    return t


def pinclip_loss(
    anchor: Embeddings,
    neighbor: Embeddings | None = None,
    *,
    logit_scale: Tensor,
    logit_bias: Tensor | None = None,
    cfg: LossConfig | None = None,
    co_board: Tensor | np.ndarray | None = None,
    dup_ids: Tensor | np.ndarray | None = None,
    log_q: Tensor | np.ndarray | None = None,
    has_neighbor: Tensor | np.ndarray | None = None,
    has_text: Tensor | np.ndarray | None = None,
    neighbors_in_batch: bool = False,
    board_emb: Tensor | None = None,
    board_member: Tensor | np.ndarray | None = None,
    board_log_q: Tensor | np.ndarray | None = None,
    has_board: Tensor | np.ndarray | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The PinCLIP loss for this rank's batch; returns (total, float parts for logging).

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
        positive; needed when ``cfg.board_weight > 0``). board_member: bool [B, B·world],
        True where local anchor i is on the board of column j (any rank): no negative.
        board_log_q: float [B], log sampling probability of each row's board (logQ).
        has_board: bool [B], False for anchors without a board (skipped by L_board).
    Under DDP all of these are this rank's rows and must have the same B on every rank.
    """
    cfg = cfg or LossConfig()
    if cfg.kind == "siglip" and logit_bias is None:
        raise ValueError("pinclip_loss: kind='siglip' needs logit_bias (the model's SigLIP bias)")
    use_nbr = cfg.nbr_weight > 0 and len(cfg.nbr_terms) > 0
    if use_nbr and neighbor is None and not neighbors_in_batch:
        raise ValueError("pinclip_loss: nbr_weight > 0 needs neighbor embeddings (or set it to 0)")
    use_board = cfg.board_weight > 0 and len(cfg.board_terms) > 0
    if use_board and board_emb is None:
        raise ValueError("pinclip_loss: board_weight > 0 needs board_emb (or set it to 0)")

    image, text = _emb(anchor, "image_emb", "anchor"), _emb(anchor, "text_emb", "anchor")
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
    world = get_world_size()
    n_all = b * world

    if dup_ids is None:
        same = torch.zeros(n_all, n_all, dtype=torch.bool, device=dev)
    else:
        ids = all_gather_no_grad(_as_tensor(dup_ids, "dup_ids", (b,), torch.long, dev))
        same = ids[:, None] == ids[None, :]
    all_rows = torch.ones(n_all, dtype=torch.bool, device=dev)
    texted = all_rows
    if has_text is not None:
        texted = all_gather_no_grad(_as_tensor(has_text, "has_text", (b,), torch.bool, dev))
    term = dict(
        dims=dims, logit_scale=logit_scale, logit_bias=logit_bias, kind=cfg.kind, log_q_b=None
    )

    image_all, text_all = all_gather_with_grad(image), all_gather_with_grad(text)
    loss_it, acc_it = _term(image_all, text_all, exclude=same, valid=texted, **term)
    total = loss_it
    parts = {"it": loss_it.item(), "it_acc": acc_it}

    gathered = {"image_emb": image_all, "text_emb": text_all}
    if (
        cfg.fuse_weight > 0
        or (use_nbr and ("pin_pin" in cfg.nbr_terms or neighbors_in_batch))
        or (use_board and "pin_board" in cfg.board_terms)
    ):
        gathered["pin_emb"] = all_gather_with_grad(_emb(anchor, "pin_emb", "anchor"))
        if gathered["pin_emb"].shape != image_all.shape:
            raise ValueError("pinclip_loss: anchor pin_emb and image_emb shapes differ")

    if cfg.fuse_weight > 0:
        pin_all = gathered["pin_emb"]
        l_pi, _ = _term(pin_all, image_all, exclude=same, valid=all_rows, **term)
        l_pt, _ = _term(pin_all, text_all, exclude=same, valid=texted, **term)
        loss_fuse = (l_pi + l_pt) / 2
        total = total + cfg.fuse_weight * loss_fuse
        parts["fuse"] = loss_fuse.item()

    if use_nbr:
        if neighbors_in_batch:
            nbr_pin = _emb(anchor, "pin_emb", "anchor")
        else:
            assert neighbor is not None
            nbr_pin = _emb(neighbor, "pin_emb", "neighbor")
        if nbr_pin.shape != (b, dim):
            raise ValueError(f"pinclip_loss: neighbor.pin_emb {tuple(nbr_pin.shape)} != {(b, dim)}")
        if co_board is None:
            co = torch.zeros(n_all, n_all, dtype=torch.bool, device=dev)
        else:
            co = all_gather_no_grad(_as_tensor(co_board, "co_board", (b, n_all), torch.bool, dev))
        valid = all_rows
        if has_neighbor is not None:
            valid = all_gather_no_grad(
                _as_tensor(has_neighbor, "has_neighbor", (b,), torch.bool, dev)
            )
        lq = None
        if cfg.logq:
            if log_q is None:
                raise ValueError("pinclip_loss: cfg.logq=True needs log_q (log sampling prob.)")
            lq = all_gather_no_grad(_as_tensor(log_q, "log_q", (b,), image.dtype, dev))
        eye = torch.eye(n_all, dtype=torch.bool, device=dev)
        if neighbors_in_batch:  # positives: the other anchors on a board; never itself
            nbr_all = gathered["pin_emb"]
            positives, exclude = co & ~eye, eye | (same & ~co)
        elif cfg.nbr_positives == "board":  # its neighbor and every co-board neighbor column
            nbr_all = all_gather_with_grad(nbr_pin)
            positives, exclude = eye | co, torch.zeros_like(co)
        else:  # its neighbor only; co-board columns are neither positive nor negative
            nbr_all = all_gather_with_grad(nbr_pin)
            positives, exclude = eye, co
        sources = {"pin_pin": "pin_emb", "image_pin": "image_emb", "text_pin": "text_emb"}
        losses = []
        nbr_term = {**term, "log_q_b": lq, "positives": positives}
        for name in cfg.nbr_terms:
            src = gathered[sources[name]]
            rows = valid & texted if name == "text_pin" else valid
            loss, acc = _term(src, nbr_all, exclude=exclude, valid=rows, valid_b=valid, **nbr_term)
            losses.append(loss)
            parts[f"nbr_{name}_acc"] = acc
        loss_nbr = torch.stack(losses).mean()
        total = total + cfg.nbr_weight * loss_nbr
        parts["nbr"] = loss_nbr.item()

    if use_board:
        assert board_emb is not None
        if board_emb.shape != (b, dim):
            raise ValueError(f"pinclip_loss: board_emb {tuple(board_emb.shape)} != {(b, dim)}")
        board_all = all_gather_with_grad(board_emb)
        member = torch.zeros(n_all, n_all, dtype=torch.bool, device=dev)
        if board_member is not None:
            member = all_gather_no_grad(
                _as_tensor(board_member, "board_member", (b, n_all), torch.bool, dev)
            )
        boarded = all_rows
        if has_board is not None:
            boarded = all_gather_no_grad(_as_tensor(has_board, "has_board", (b,), torch.bool, dev))
        lq = None
        if cfg.board_logq:
            if board_log_q is None:
                raise ValueError("pinclip_loss: cfg.board_logq=True needs board_log_q")
            lq = all_gather_no_grad(_as_tensor(board_log_q, "board_log_q", (b,), image.dtype, dev))
        sources = {"pin_board": "pin_emb", "image_board": "image_emb"}
        losses = []
        for name in cfg.board_terms:
            loss, acc = _term(
                gathered[sources[name]],
                board_all,
                exclude=member,
                valid=boarded,
                symmetric=cfg.board_symmetric,
                **{**term, "log_q_b": lq},
            )
            losses.append(loss)
            parts[f"board_{name}_acc"] = acc
        loss_board = torch.stack(losses).mean()
        total = total + cfg.board_weight * loss_board
        parts["board"] = loss_board.item()

    parts["loss"] = total.item()
    parts["logit_scale"] = logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp().item()
    return total, parts
