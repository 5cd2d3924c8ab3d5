"""Text tower: a token encoder (pretrained HF or small from scratch), then adapter layers.

The encoder's token states are what a feature cache stores when the encoder is frozen;
the projection to model width and the adapter transformer layers are always trained.
Pooling is the attention-masked mean, as MiniLM sentence embeddings are trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import SCRATCH, PinCLIPConfig
from .layers import masked_mean, run_transformer, transformer
from .pretrained import load_hf_encoder, load_hf_tokenizer


@dataclass
class TextTokens:
    """Text tower output: states [B, L, W] and attention mask [B, L] (1 = real token)."""

    states: torch.Tensor
    mask: torch.Tensor

    @property
    def pooled(self) -> torch.Tensor:
        return masked_mean(self.states, self.mask)


class ScratchTextEncoder(nn.Module):
    """A small transformer over byte tokens: needs no download, trains from scratch."""

    def __init__(self, cfg: PinCLIPConfig, vocab_size: int) -> None:
        super().__init__()
        tc = cfg.text
        self.hidden_size = tc.scratch_width
        self.tok_embed = nn.Embedding(vocab_size, tc.scratch_width)
        self.pos_embed = nn.Parameter(torch.randn(1, tc.max_length, tc.scratch_width) * 0.02)
        self.blocks = transformer(
            tc.scratch_width, tc.scratch_depth, tc.scratch_heads, cfg.mlp_ratio, cfg.dropout
        )
        self.norm = nn.LayerNorm(tc.scratch_width)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.tok_embed(input_ids) + self.pos_embed[:, : input_ids.shape[1]]
        return self.norm(run_transformer(self.blocks, x, pad_mask=attention_mask == 0))


class HFTextEncoder(nn.Module):
    """A transformers AutoModel; returns its last hidden states."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.hidden_size = int(model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def build_tokenizer(cfg: PinCLIPConfig, source: str | Path | None = None) -> Any:
    """The tokenizer that matches the encoder (byte-level ByT5 for the scratch encoder)."""
    if cfg.text.encoder == SCRATCH:
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer()
    return load_hf_tokenizer(source or cfg.text.encoder)


class TextTower(nn.Module):
    def __init__(
        self,
        cfg: PinCLIPConfig,
        tokenizer: Any,
        *,
        load_weights: bool = True,
        source: str | Path | None = None,
    ) -> None:
        super().__init__()
        tc, w = cfg.text, cfg.width
        if tc.encoder == SCRATCH:
            self.encoder: nn.Module = ScratchTextEncoder(cfg, vocab_size=len(tokenizer))
        else:
            self.encoder = HFTextEncoder(
                load_hf_encoder(source or tc.encoder, load_weights=load_weights)
            )
        self.keep_tokens = tc.keep_tokens
        self.proj = nn.Linear(self.encoder.hidden_size, w)
        self.blocks = transformer(w, tc.depth, tc.heads, cfg.mlp_ratio, cfg.dropout)
        self.norm = nn.LayerNorm(w)

    def encoder_states(self, text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's token states: what a feature cache stores when it is frozen."""
        mask = text["attention_mask"]
        states = self.encoder(text["input_ids"], mask)
        keep = self.keep_tokens
        if keep:  # sentence summary first, then the leading (already contextual) tokens
            pooled = masked_mean(states, mask).unsqueeze(1)
            states = torch.cat([pooled, states[:, : keep - 1]], dim=1)
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask[:, : keep - 1]], dim=1)
        return {"hidden_states": states, "attention_mask": mask}

    def forward(
        self,
        text: dict[str, torch.Tensor] | None = None,
        states: dict[str, torch.Tensor] | None = None,
    ) -> TextTokens:
        if states is None:
            if text is None:
                raise ValueError("TextTower needs tokenized text or precomputed encoder states")
            states = self.encoder_states(text)
        mask = states["attention_mask"]
        x = self.proj(states["hidden_states"])
        x = self.norm(run_transformer(self.blocks, x, pad_mask=mask == 0))
        return TextTokens(states=x, mask=mask)
