"""L_it (image ↔ text of the same pin, CLIP) and L_fuse (fused pin ↔ its own image and text)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from .inputs import TermBatch

if TYPE_CHECKING:
    from . import LossConfig

__all__ = ["fuse_loss", "image_text_loss"]


def image_text_loss(batch: TermBatch, cfg: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """Image ↔ text of the same pin; image-only rows (`has_text` False) are left out."""
    image, text = batch.gathered["image_emb"], batch.gathered["text_emb"]
    loss, acc = batch.contrast(image, text, exclude=batch.same, valid=batch.texted)
    return loss, {"it": loss.item(), "it_acc": acc}


def fuse_loss(batch: TermBatch, cfg: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """The mean of fused pin ↔ its own image and fused pin ↔ its own text."""
    pin = batch.anchor_all("pin_emb")
    image, text = batch.gathered["image_emb"], batch.gathered["text_emb"]
    l_pi, _ = batch.contrast(pin, image, exclude=batch.same, valid=batch.all_rows)
    l_pt, _ = batch.contrast(pin, text, exclude=batch.same, valid=batch.texted)
    loss = (l_pi + l_pt) / 2
    return loss, {"fuse": loss.item()}
