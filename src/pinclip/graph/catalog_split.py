"""A run's catalog and split, rebuilt from its `data:` section: what training and evaluation share.

Training builds its batches on this split and evaluation scores on the same one, so both
read it here, below `pinclip.train` and `pinclip.evaluate`: `CatalogSplitConfig` is the part
of a run's `data:` config that fixes which catalog, which held-out pins and boards and which
feature store (training's `DataConfig` adds its sampler and batch keys to it), and
`load_split` turns it into a `CatalogSplit` (catalog, full graph, pin split, held-out boards).
Evaluation reads the section back from a run's `config.yaml` with
`CatalogSplitConfig.from_run_config`, so it never imports the training package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from omegaconf import OmegaConf
from rich.console import Console

from pinclip._typed_config import build, check_choices, choice_error
from pinclip.data.api import build_if_missing
from pinclip.data.catalog import Catalog, read_catalog
from pinclip.errors import ConfigError

from .bipartite import PinBoardGraph
from .splits import Split, split_boards, split_pins

__all__ = ["CatalogSplit", "CatalogSplitConfig", "board_titles", "curated_boards", "load_split"]


@dataclass
class CatalogSplitConfig:
    """The split's part of a run's `data:` section (training's `DataConfig` extends it)."""

    catalog: str = "data/emoji"  # catalog directory (docs/catalog.md)
    build_if_missing: str | None = "emoji"  # builder run when the catalog is missing; null: error
    check_images: bool = True  # open and decode every image when the catalog is read
    cold_frac: float = 0.1  # share of pins held out as cold (evaluation)
    val_frac: float = 0.05  # share of pins held out for validation (model selection)
    split_seed: int = 0  # seed of the warm / val / cold split, held-out boards, neighbor sampler
    # boards held out of the board tower (never a positive): the "new board" task's queries
    board_holdout_frac: float = 0.1
    cache_dir: str = "cache"  # frozen-feature store and neighbor caches, shared by runs
    # frozen features on disk: fp16, fp32 (exact) or int8
    feature_dtype: Literal["fp16", "fp32", "int8"] = "fp16"
    # the frozen text encoder while the store is built: fp32, or int8 (dynamic int8 MatMuls in
    # ONNX Runtime, CPU only: ~1.6x faster, token states within cosine 0.96 of fp32)
    feature_text_compute: Literal["fp32", "int8"] = "fp32"

    def __post_init__(self) -> None:
        from pinclip.data.builders import BUILDERS

        check_choices(self, "data")
        if self.build_if_missing and self.build_if_missing not in BUILDERS:  # now, not at run
            raise choice_error(
                "data.build_if_missing", self.build_if_missing, (*BUILDERS.names(), None)
            )
        if self.cold_frac < 0 or self.val_frac < 0 or self.cold_frac + self.val_frac >= 1:
            raise ConfigError(
                f"data.cold_frac={self.cold_frac}, data.val_frac={self.val_frac}: "
                "both must be >= 0 with a sum < 1"
            )
        if not 0 <= self.board_holdout_frac < 1:
            raise ConfigError(
                f"data.board_holdout_frac={self.board_holdout_frac} must be in [0, 1)"
            )

    @classmethod
    def from_run_config(
        cls, path: str | Path | None, *, catalog: str | Path | None = None
    ) -> CatalogSplitConfig:
        """The split part of the `data:` section of a run's saved `config.yaml` (None: the
        defaults), `catalog` replacing its catalog. Training's own keys (sampler, batch, ...)
        are left to `pinclip.train.load_config`, which checks the whole file."""
        layers = []
        if path is not None:
            section = OmegaConf.to_container(OmegaConf.load(path)).get("data") or {}
            own = {f.name for f in dataclasses.fields(cls)}
            layers.append(({k: v for k, v in section.items() if k in own}, str(path)))
        if catalog is not None:
            layers.append(({"catalog": str(catalog)}, "--catalog"))
        return build(cls, layers, prefix="data.")


def board_titles(catalog: Catalog, graph: PinBoardGraph) -> list[str]:
    """Board titles in the graph's board order ('' where a board has none)."""
    titles = catalog.boards.set_index("board_id")["title"].reindex(graph.board_ids)
    return titles.fillna("").astype(str).tolist()


def curated_boards(catalog: Catalog, graph: PinBoardGraph) -> np.ndarray:
    """bool [n_boards]: boards with kind == 'curated' (all False without a kind column)."""
    if "kind" not in catalog.boards:
        return np.zeros(graph.n_boards, dtype=bool)
    kind = catalog.boards.set_index("board_id")["kind"].reindex(graph.board_ids)
    return (kind == "curated").to_numpy()


@dataclass
class CatalogSplit:
    """A validated catalog, its full graph and the run's split: what training and
    evaluation both start from."""

    catalog: Catalog
    graph: PinBoardGraph  # the full graph: ground truth for evaluation
    split: Split
    texts: Sequence[str]  # a TextColumn: Arrow-backed, one str per pin on access
    n_rejected: int
    held_out_boards: np.ndarray  # boards never a board-tower positive (`split_boards`)

    @property
    def n_pins(self) -> int:
        return self.graph.n_pins

    @cached_property
    def curated_boards(self) -> np.ndarray:
        """bool [n_boards]: boards with kind == 'curated' (all False without a kind column)."""
        return curated_boards(self.catalog, self.graph)

    @property
    def board_titles(self) -> list[str]:
        """Each board's title, in board index order (what the board tower embeds)."""
        return board_titles(self.catalog, self.graph)

    def parts(self) -> dict:
        """This split's fields by name: what a subclass (training's data, evaluation's)
        is built from."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(CatalogSplit)}


def load_split(
    cfg: CatalogSplitConfig, *, run_dir: Path | None = None, console: Console | None = None
) -> CatalogSplit:
    """Read (or build) the catalog, drop rejected rows with a count, build the graph, split."""
    console = console or Console(stderr=True)
    root = Path(cfg.catalog)
    build_if_missing(root, cfg.build_if_missing, console)
    catalog, report = read_catalog(
        root, check_images=cfg.check_images, progress=console.is_terminal
    )
    n_rejected = len(report.rejects)
    if n_rejected:
        where = (run_dir or root) / "rejects.jsonl"
        report.write_jsonl(where)
        console.print(
            f"[yellow]skipped {n_rejected} rejected catalog rows (listed in {where}); training on the good rows[/]"
        )
    graph = PinBoardGraph.from_catalog(catalog)
    split = split_pins(graph, cold_frac=cfg.cold_frac, val_frac=cfg.val_frac, seed=cfg.split_seed)
    held_out = split_boards(
        graph,
        frac=cfg.board_holdout_frac,
        seed=cfg.split_seed,
        curated=curated_boards(catalog, graph),
    )
    return CatalogSplit(catalog, graph, split, catalog.texts(), n_rejected, held_out)
