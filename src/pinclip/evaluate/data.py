"""What every evaluation needs: the catalog, the run's own split and both relevance graphs.

The split is rebuilt from a run's resolved `config.yaml` exactly as training built it
(`pinclip.graph.load_split` on the split's part of its `data:` section), so cold pins are
pins the model never saw; evaluation never imports the training package. Relevance is "shares a board" in the full graph,
either over every board or only over curated boards (the headline: curated boards are
topical collections, user boards are noisier).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from pinclip.errors import NotFoundError
from pinclip.graph import CatalogSplit, CatalogSplitConfig, PinBoardGraph, load_split

RELEVANCE = ("curated", "all")


@dataclass
class EvalData(CatalogSplit):
    """A run's `CatalogSplit` (catalog, full graph, split, pin texts, held-out boards, all
    built by `pinclip.graph.load_split` as training built them) and both relevance graphs."""

    config: CatalogSplitConfig  # the split's part of the run's `data:` section
    source: str = ""  # where the split came from (a run dir or a catalog + defaults)
    _relevance: dict[str, PinBoardGraph] = field(default_factory=dict, repr=False)

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
    def from_config(cls, cfg: CatalogSplitConfig, source: str = "") -> EvalData:
        """Load the catalog and split exactly as `pinclip train` does for `cfg` (a run's
        `data` section; no sampler)."""
        data = load_split(cfg, console=Console(quiet=True))
        return cls(**data.parts(), config=cfg, source=source or cfg.catalog)

    @classmethod
    def from_run(cls, path: str | Path, catalog: str | Path | None = None) -> EvalData:
        """The split of a run dir, or of the run a model dir (run/best) belongs to.

        A bare model dir (no run config next to it) is evaluated on the default split of
        `catalog`; it may have trained on those pins, which the caller should say.
        """
        path = Path(path)
        run_dir = find_run_dir(path)
        if run_dir is None:
            if catalog is None:
                raise NotFoundError(
                    f"{path}: not a run dir (no config.yaml here or in its parent); "
                    "pass --catalog DIR to evaluate a bare model on that catalog's default split"
                )
            cfg = CatalogSplitConfig.from_run_config(None, catalog=catalog)
            return cls.from_config(cfg, source=f"{catalog} (default split)")
        cfg = CatalogSplitConfig.from_run_config(run_dir / "config.yaml", catalog=catalog)
        return cls.from_config(cfg, source=str(run_dir))


def find_run_dir(path: Path) -> Path | None:
    """The run dir holding `path` (itself, or the parent of a best/ or final/ model dir)."""
    for candidate in (path, path.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None
