"""PinCLIP objectives: L = L_it + a·L_fuse + λ·L_nbr + β·L_board (the math: docs/objectives.md).

Every term is a contrastive loss between two embedding sets over in-batch candidates, one
module each, listed in `LOSS_TERMS` (name → its weight in `LossConfig`, the `LossInputs`
fields it needs, the function):

- ``it``:   image ↔ text of the same pin (CLIP), `losses.clip`.
- ``fuse``: fused pin ↔ its own image, and fused pin ↔ its own text, `losses.clip`.
- ``nbr``:  anchor {pin, image, text} ↔ the pin embedding of its sampled board neighbor,
  `losses.neighbor`.
- ``board``: anchor {pin, image} ↔ the board-tower embedding of one of its boards (the
  batch's boards are the candidates; sampled softmax with logQ over board popularity),
  `losses.board`.

`pinclip_loss` is a loop over the enabled terms. Each term is averaged over Matryoshka
prefixes and, under DDP, scores this rank's rows against every rank's columns (features
gathered with gradient), scaled so DDP's gradient averaging gives exactly the one-process
gradient of the global-batch loss (`losses.contrastive`).

Adding a term: its module (a function `(TermBatch, LossConfig) -> (loss, parts)`), and
here its weight field (and options) in `LossConfig` and its row in `LOSS_TERMS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from pinclip._typed_config import choice_error
from pinclip.errors import ConfigError
from pinclip.registry import Registry

from .board import BOARD_TERMS, board_loss
from .clip import fuse_loss, image_text_loss
from .contrastive import MAX_LOGIT_SCALE, contrastive_logits
from .inputs import Embeddings, LossInputs, TermBatch
from .neighbor import NBR_TERMS, neighbor_loss

__all__ = [
    "BOARD_TERMS",
    "LOSS_TERMS",
    "NBR_TERMS",
    "Embeddings",
    "LossConfig",
    "LossInputs",
    "LossTerm",
    "TermBatch",
    "contrastive_logits",
    "pinclip_loss",
]


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
        weights = [t.value.weight for t in LOSS_TERMS if t.value.weight]
        if any(getattr(self, w) < 0 for w in weights):
            raise ConfigError(f"LossConfig.{', '.join(weights)} must be >= 0")
        for entry in LOSS_TERMS:
            term = entry.value
            if term.parts_field:
                for part in getattr(self, term.parts_field):
                    if part not in term.parts:
                        raise choice_error(f"loss.{term.parts_field}[]", part, term.parts)
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


TermFn = Callable[[TermBatch, LossConfig], "tuple[Tensor, dict[str, float]]"]


@dataclass(frozen=True)
class LossTerm:
    """One row of `LOSS_TERMS`: what a term is weighted by, reads, and computes."""

    fn: TermFn  # (TermBatch, LossConfig) -> (its loss, its float parts for logging)
    weight: str | None  # the LossConfig field weighting it (> 0: on); None: always on, weight 1
    needs: tuple[str, ...] = ()  # LossInputs fields it cannot run without
    parts_field: str | None = None  # the LossConfig field choosing its sub-terms (empty: off)
    parts: tuple[str, ...] = ()  # the sub-terms that field may name

    def enabled(self, cfg: LossConfig) -> bool:
        """Whether `cfg` turns this term on: a weight > 0 and, if it has sub-terms, some."""
        if self.weight is None:
            return True
        if getattr(cfg, self.weight) <= 0:
            return False
        return not self.parts_field or len(getattr(cfg, self.parts_field)) > 0


#: The terms of the objective, summed in this order (name → weight field, inputs, function).
LOSS_TERMS: Registry[LossTerm] = Registry("loss term")
LOSS_TERMS.add("it", LossTerm(image_text_loss, None), help="image ↔ text of the same pin")
LOSS_TERMS.add(
    "fuse", LossTerm(fuse_loss, "fuse_weight"), help="fused pin ↔ its own image and text"
)
LOSS_TERMS.add(
    "nbr",
    LossTerm(
        neighbor_loss, "nbr_weight", needs=("neighbor",), parts_field="nbr_terms", parts=NBR_TERMS
    ),
    help="anchor ↔ its sampled board neighbor's pin",
)
LOSS_TERMS.add(
    "board",
    LossTerm(
        board_loss,
        "board_weight",
        needs=("board_emb",),
        parts_field="board_terms",
        parts=BOARD_TERMS,
    ),
    help="anchor ↔ the board tower's embedding of one of its boards",
)


def pinclip_loss(
    inputs: LossInputs, cfg: LossConfig | None = None
) -> tuple[Tensor, dict[str, float]]:
    """The PinCLIP loss of this rank's batch: the weighted sum of the enabled `LOSS_TERMS`;
    returns (total, float parts for logging: each term's loss and top-1 accuracies, the
    total as ``loss`` and the temperature's inverse as ``logit_scale``)."""
    cfg = cfg or LossConfig()
    if cfg.kind == "siglip" and inputs.logit_bias is None:
        raise ValueError("pinclip_loss: kind='siglip' needs logit_bias (the model's SigLIP bias)")
    terms = [entry for entry in LOSS_TERMS if entry.value.enabled(cfg)]
    for entry in terms:
        missing = [name for name in entry.value.needs if not inputs.has(name)]
        if missing:
            raise ValueError(
                f"pinclip_loss: {entry.value.weight} > 0 needs {', '.join(missing)} "
                "(or set it to 0)"
            )
    batch = TermBatch.build(inputs, cfg)
    total: Tensor | None = None
    parts: dict[str, float] = {}
    for entry in terms:
        loss, term_parts = entry.value.fn(batch, cfg)
        if entry.value.weight is not None:
            loss = getattr(cfg, entry.value.weight) * loss
        total = loss if total is None else total + loss
        parts |= term_parts
    assert total is not None  # `it` is always on
    parts["loss"] = total.item()
    parts["logit_scale"] = inputs.logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp().item()
    return total, parts
