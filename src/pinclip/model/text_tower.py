"""Text tower: a token encoder (pretrained HF or small from scratch), then adapter layers.

The encoder's token states are what a feature cache stores when the encoder is frozen;
the projection to model width and the adapter transformer layers are always trained.
With `text.tune_last_layers: N` the frozen encoder is cut below its last N layers: the
cache holds the states below the cut and those N layers train with the rest (frozen
features cap what a head on them can learn). Pooling is the attention-masked mean, as
MiniLM sentence embeddings are trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pinclip.errors import ConfigError

from .config import SCRATCH, PinCLIPConfig
from .layers import masked_mean, run_transformer, transformer
from .pretrained import load_hf_encoder, load_hf_tokenizer


@dataclass
class TextTokens:
    """Text tower output: states [B, L, W] and attention mask [B, L] (1 = real token)."""

    states: torch.Tensor
    mask: torch.Tensor
    #: the backbone's own pooled output [B, H] (foundation text towers): what its projection embeds
    native: torch.Tensor | None = None

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
    """A transformers AutoModel; returns its last hidden states.

    `tune_last_layers` N > 0 splits it into `lower` (embeddings and all layers but the last
    N) and `upper` (the last N layers), run as the model's own forward runs them.
    """

    def __init__(self, model: nn.Module, tune_last_layers: int = 0) -> None:
        super().__init__()
        self.model = model
        self.hidden_size = int(model.config.hidden_size)
        self.tune_last_layers = tune_last_layers
        if tune_last_layers:
            layers = getattr(getattr(model, "encoder", None), "layer", None)
            if not isinstance(layers, nn.ModuleList) or not hasattr(model, "embeddings"):
                raise ConfigError(
                    f"text.tune_last_layers needs a BERT-style encoder (embeddings + "
                    f"encoder.layer); {type(model).__name__} has none: set it to 0"
                )
            if tune_last_layers > len(layers):
                raise ConfigError(
                    f"text.tune_last_layers={tune_last_layers} but the encoder has "
                    f"{len(layers)} layers"
                )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    @property
    def _layers(self) -> nn.ModuleList:
        return self.model.encoder.layer

    def frozen_part(self) -> nn.Module:
        """The modules below the cut (all of it when nothing is tuned): what a store keys on."""
        if not self.tune_last_layers:
            return self
        cut = len(self._layers) - self.tune_last_layers
        return nn.ModuleList([self.model.embeddings, *self._layers[:cut]])

    def tuned_part(self) -> nn.ModuleList:
        n = self.tune_last_layers
        return nn.ModuleList(self._layers[len(self._layers) - n :] if n else [])

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states entering the first tuned layer."""
        x = self.model.embeddings(input_ids=input_ids)
        cut = len(self._layers) - self.tune_last_layers
        return self._run(self._layers[:cut], x, attention_mask)

    def upper(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last hidden states from `lower`'s output."""
        n = self.tune_last_layers
        return self._run(self._layers[len(self._layers) - n :], states, attention_mask)

    def _run(self, layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask4d = _attention_mask(self.model, x, mask)
        for layer in layers:
            out = layer(x, mask4d)
            x = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple
        return x


class FoundationTextEncoder(nn.Module):
    """The text tower of a foundation (`pinclip.model.backbones.TokenEncoder`).

    Its states are the backbone's pooled output first (its own EOS / last-token / mean
    pooling) then its final token states, with the mask grown by one: a store holds them as
    any encoder's, and the tower reads the pooled one back as `native` for an aligned head.
    `tune_last_layers` N > 0 cuts it below its last N layers (the store then holds every
    token's state entering them); those and the final norm/pooling train.
    """

    def __init__(self, encoder: nn.Module, tune_last_layers: int = 0) -> None:
        super().__init__()
        self.model = encoder
        self.hidden_size = int(encoder.hidden_size)
        n = len(encoder.layers)
        if tune_last_layers > n:
            raise ConfigError(
                f"text.tune_last_layers={tune_last_layers} but the backbone has {n} layers"
            )
        self.cut = n - tune_last_layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        return self.upper(self.lower(input_ids, attention_mask))

    def frozen_part(self) -> nn.Module:
        if self.cut == len(self.model.layers):
            return self
        return nn.ModuleList([*self.model.embed_modules(), *self.model.layers[: self.cut]])

    def tuned_part(self) -> nn.ModuleList:
        if self.cut == len(self.model.layers):
            return nn.ModuleList()
        return nn.ModuleList([*self.model.layers[self.cut :], *self.model.finish_modules()])

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        """Token states entering the first tuned layer (all layers run when none is tuned)."""
        x, mask = self.model.embed(input_ids, attention_mask)
        return {"hidden_states": self.model.run(x, mask, 0, self.cut), "attention_mask": mask}

    def upper(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """[pooled, final tokens] and their mask from `lower`'s output."""
        mask = states["attention_mask"]
        x = self.model.run(states["hidden_states"], mask, self.cut, len(self.model.layers))
        tokens, pooled = self.model.finish(x, mask)
        return {
            "hidden_states": torch.cat([pooled.unsqueeze(1), tokens], dim=1),
            "attention_mask": torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1),
        }


def _attention_mask(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The attention mask the model's own forward would build for its layers."""
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:  # transformers < 4.56
        return model.get_extended_attention_mask(mask, mask.shape, dtype=x.dtype)
    return create_bidirectional_mask(config=model.config, inputs_embeds=x, attention_mask=mask)


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_length: int, *, return_tensors: str = "pt"
) -> dict[str, Any]:
    """input_ids and attention_mask [B, L], padded to the longest text and cut at `max_length`:
    the one tokenization that training, the feature store and serving share."""
    enc = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors=return_tensors,
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


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
        foundation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        tc, w = cfg.text, cfg.width
        self.foundation = foundation is not None
        if foundation is not None:
            self.encoder: nn.Module = FoundationTextEncoder(foundation, tc.tune_last_layers)
        elif tc.encoder == SCRATCH:
            if tc.tune_last_layers:
                raise ConfigError(
                    "text.tune_last_layers tunes a pretrained encoder; the scratch encoder "
                    "trains whole (freeze_text_encoder=false): set it to 0"
                )
            self.encoder = ScratchTextEncoder(cfg, vocab_size=len(tokenizer))
        else:
            self.encoder = HFTextEncoder(
                load_hf_encoder(source or tc.encoder, load_weights=load_weights),
                tune_last_layers=tc.tune_last_layers,
            )
        self.keep_tokens = tc.keep_tokens
        self.tune_last_layers = tc.tune_last_layers
        self.proj = nn.Linear(self.encoder.hidden_size, w)
        self.blocks = transformer(w, tc.depth, tc.heads, cfg.mlp_ratio, cfg.dropout)
        self.norm = nn.LayerNorm(w)

    def frozen_part(self) -> nn.Module:
        """The encoder below the tuned layers (all of it when none is tuned)."""
        return self.encoder.frozen_part() if self.tune_last_layers else self.encoder

    def tuned_part(self) -> nn.ModuleList:
        """The encoder's tuned last layers (empty when none is tuned)."""
        return self.encoder.tuned_part() if self.tune_last_layers else nn.ModuleList()

    def encoder_states(self, text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The frozen encoder's token states: what a feature cache stores. With tuned last
        layers, every token's state below them (the tuned layers attend over all tokens)."""
        mask = text["attention_mask"]
        if self.foundation:
            lower = self.encoder.lower(text["input_ids"], mask)
            return lower if self.tune_last_layers else self._kept_first(self.encoder.upper(lower))
        if self.tune_last_layers:
            states = self.encoder.lower(text["input_ids"], mask)
            return {"hidden_states": states, "attention_mask": mask}
        return self._kept(self.encoder(text["input_ids"], mask), mask)

    def _kept_first(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """keep_tokens on a foundation's states: its pooled state, then the first K-1 tokens."""
        if not self.keep_tokens:
            return states
        return {k: v[:, : self.keep_tokens] for k, v in states.items()}

    def _kept(self, states: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
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
        if self.foundation and self.tune_last_layers:
            states = self._kept_first(self.encoder.upper(states))
        elif self.tune_last_layers:
            mask = states["attention_mask"]
            states = self._kept(self.encoder.upper(states["hidden_states"], mask), mask)
        mask = states["attention_mask"]
        x = self.proj(states["hidden_states"])
        x = self.norm(run_transformer(self.blocks, x, pad_mask=mask == 0))
        native = states["hidden_states"][:, 0] if self.foundation else None
        return TextTokens(states=x, mask=mask, native=native)
