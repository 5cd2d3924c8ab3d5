"""The contrastive machinery every loss term shares: logits, one direction, one symmetric term.

A term scores this rank's rows against every rank's columns (features gathered with
gradient), averaged over Matryoshka prefixes, scaled so DDP's gradient averaging gives
exactly the one-process gradient of the global-batch loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pinclip.distributed import get_rank, get_world_size

__all__ = ["MAX_LOGIT_SCALE", "contrastive_logits", "contrastive_term"]

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature never below 0.01


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


def contrastive_term(
    a: Tensor,
    b: Tensor,
    *,
    exclude: Tensor,
    valid: Tensor,
    dims: tuple[int, ...],
    logit_scale: Tensor,
    logit_bias: Tensor | None,
    kind: str,
    log_q_b: Tensor | None = None,
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
