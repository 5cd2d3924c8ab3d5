"""What every evaluation needs: the catalog, the run's own split and both relevance graphs.

The split is rebuilt from a run's resolved `config.yaml` exactly as training built it, so
cold pins are pins the model never saw. Relevance is "shares a board" in the full graph,
either over every board or only over curated boards (the headline: curated boards are
topical collections, user boards are noisier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from rich.console import Console

from pinclip.data.catalog import Catalog
from pinclip.errors import NotFoundError
from pinclip.graph import PinBoardGraph, Split, split_boards
from pinclip.train.config import TrainConfig, load_config
from pinclip.train.data import board_titles, curated_boards, load_split

RELEVANCE = ("curated", "all")


@dataclass
class EvalData:
    """A catalog, its full graph, the split and the pin texts a model reads."""

    catalog: Catalog
    graph: PinBoardGraph
    split: Split
    texts: Sequence[str]  # a TextColumn: Arrow-backed, one str per pin on access
    config: TrainConfig
    source: str = ""  # where the split came from (a run dir or a catalog + defaults)
    _relevance: dict[str, PinBoardGraph] = field(default_factory=dict, repr=False)

    @property
    def n_pins(self) -> int:
        return self.graph.n_pins

    @cached_property
    def curated_boards(self) -> np.ndarray:
        """Boolean [n_boards]: boards with kind == 'curated' (all False without a kind column)."""
        return curated_boards(self.catalog, self.graph)

    @property
    def board_titles(self) -> list[str]:
        return board_titles(self.catalog, self.graph)

    @cached_property
    def held_out_boards(self) -> np.ndarray:
        """The boards training held out of the board tower (the same `split_boards` call)."""
        d = self.config.data
        return split_boards(
            self.graph, frac=d.board_holdout_frac, seed=d.split_seed, curated=self.curated_boards
        )

    def relevance_graph(self, relevance: str) -> PinBoardGraph:
        """The full graph ('all') or only its curated boards' edges ('curated')."""
        if relevance not in RELEVANCE:
            raise ValueError(f"relevance={relevance!r}: use one of {RELEVANCE}")
        if relevance == "all":
            return self.graph
        if relevance not in self._relevance:
            keep = np.flatnonzero(self.curated_boards)
            pin_board = self.graph.pin_board[:, keep].tocsr()
            pin_board.sort_indices()
            board_pin = pin_board.T.tocsr()
            board_pin.sort_indices()
            self._relevance[relevance] = PinBoardGraph(
                self.graph.pin_ids, self.graph.board_ids[keep], pin_board, board_pin
            )
        return self._relevance[relevance]

    @property
    def relevances(self) -> tuple[str, ...]:
        """The relevance definitions this catalog supports (no curated boards: only 'all')."""
        return RELEVANCE if self.curated_boards.any() else ("all",)

    @property
    def headline_relevance(self) -> str:
        """The relevance the headline figures use: curated boards where the catalog has them."""
        return self.relevances[0]

    @classmethod
    def from_config(cls, cfg: TrainConfig, source: str = "") -> EvalData:
        """Load the catalog and split exactly as `pinclip train` does for `cfg` (no sampler)."""
        data = load_split(cfg.data, console=Console(quiet=True))
        return cls(
            data.catalog, data.graph, data.split, data.texts, cfg, source or cfg.data.catalog
        )

    @classmethod
    def from_run(cls, path: str | Path, catalog: str | Path | None = None) -> EvalData:
        """The split of a run dir, or of the run a model dir (run/best) belongs to.

        A bare model dir (no run config next to it) is evaluated on the default split of
        `catalog`; it may have trained on those pins, which the caller should say.
        """
        path = Path(path)
        run_dir = find_run_dir(path)
        overrides = [f"data.catalog={catalog}"] if catalog else []
        if run_dir is None:
            if catalog is None:
                raise NotFoundError(
                    f"{path}: not a run dir (no config.yaml here or in its parent); "
                    "pass --catalog DIR to evaluate a bare model on that catalog's default split"
                )
            return cls.from_config(
                load_config(None, overrides), source=f"{catalog} (default split)"
            )
        return cls.from_config(load_config(run_dir / "config.yaml", overrides), source=str(run_dir))


def find_run_dir(path: Path) -> Path | None:
    """The run dir holding `path` (itself, or the parent of a best/ or final/ model dir)."""
    for candidate in (path, path.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None
