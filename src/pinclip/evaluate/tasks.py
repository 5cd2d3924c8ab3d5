"""The retrieval tasks (docs/evaluation.md), scored for one embedder on one split.

| task                  | query                             | candidates  | relevant               |
|-----------------------|-----------------------------------|-------------|------------------------|
| related_cold          | a cold pin's `pin` embedding      | all pins    | pins sharing a board   |
| related_cold_image    | a cold pin's `image` embedding    | all pins    | pins sharing a board   |
| related_cold_textless | an image-only cold pin's `pin`    | all pins    | pins sharing a board   |
| related_warm          | a warm pin's `pin` embedding      | all pins    | pins sharing a board   |
| text_to_image         | a cold pin's `text` embedding     | all `image` | that pin; board-mates  |
| image_to_text         | a cold pin's `image` embedding    | all `text`  | that pin's text        |
| board_to_pins         | a board title (`embed_texts`)     | cold pins   | the board's cold pins  |
| boards_for_cold       | a cold pin's `pin` embedding      | board titles| the pin's boards       |
| new_board_to_pins     | a held-out board's title          | all pins    | the board's pins       |

Board-based tasks are scored under each relevance ('curated' boards only, and 'all'
boards); image_to_text under 'self'; text_to_image under 'self' (the pin's own image) and
under each board relevance (the images of its board-mates, its own excluded). A query of
text against *pin* embeddings would find the pin by its own text, so it would measure
nothing; against images it asks whether the text tower and the image tower agree.
related_cold_textless scores the cold pins whose catalog text is blank (image-only uploads);
it is skipped when the catalog has none. Search is exact (`exact_topk`). Candidates
for board_to_pins are the cold pins only: the task asks whether new pins are findable
from a board's title, which warm pins of that board would otherwise crowd out.

Board titles are embedded with `embed_texts`: for a PinCLIP model that is its board tower
(`PinCLIP.board_embedding`, the title through the text tower), for a baseline its text
embedding. new_board_to_pins queries only the held-out boards (`EvalData.held_out_boards`,
never a board-tower positive in training): a new board from its title alone.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from pinclip.atomic import atomic_write_text
from pinclip.errors import InputError
from pinclip.retrieval import exact_topk, related_pins_hits, related_pins_topk, retrieval_metrics

from .baselines.base import Embedder, PinEmbeddings, check_embeddings
from .bootstrap import mean_cis
from .data import EvalData

TASKS = {
    "related_cold": "related pins, cold (image+text)",
    "related_cold_image": "related pins, cold (image only)",
    "related_cold_textless": "related pins, cold image-only pins",
    "related_warm": "related pins, warm",
    "text_to_image": "text → image (cold)",
    "image_to_text": "image → text (cold)",
    "board_to_pins": "board → cold pins",
    "boards_for_cold": "cold pin → its boards",
    "new_board_to_pins": "new board's title → pins",
}
IDENTITY_TASKS = ("image_to_text",)  # scored under 'self' only
SELF_AND_BOARDS = ("text_to_image",)  # scored under 'self' and every board relevance


def task_relevances(task: str, relevances: tuple[str, ...]) -> tuple[str, ...]:
    """The relevances a task is scored under, given the catalog's board relevances."""
    if task in IDENTITY_TASKS:
        return ("self",)
    return ("self", *relevances) if task in SELF_AND_BOARDS else relevances


KS = (1, 10, 50)
DEPTH = max(KS)


@dataclass
class TaskResult:
    """One task under one relevance: per-query metrics, their means with 95% CIs, the ranking."""

    task: str
    relevance: str
    per_query: dict[str, np.ndarray]
    summary: dict[str, tuple[float, float, float]]  # metric -> (mean, ci_low, ci_high)
    n_queries: int
    n_without_relevant: int
    recall_curve: np.ndarray  # mean recall@k for k = 1..DEPTH
    queries: np.ndarray  # query ids (pin or board index) with at least one relevant item
    retrieved: np.ndarray  # [Q, DEPTH] candidate pin indices
    hits: np.ndarray  # [Q, DEPTH] bool

    def to_json(self) -> dict:
        return {
            "metrics": {m: {"mean": v[0], "ci95": [v[1], v[2]]} for m, v in self.summary.items()},
            "n_queries": self.n_queries,
            "n_without_relevant": self.n_without_relevant,
            "recall_curve": [round(float(x), 6) for x in self.recall_curve],
        }


@dataclass
class EvalResult:
    """Every task for one embedder; `results[(task, relevance)]`."""

    name: str
    results: dict[tuple[str, str], TaskResult]
    embeddings: PinEmbeddings
    split_source: str
    loss_log: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it is n/a
    is_floor: bool = False  # a reference floor (random): never the best baseline

    def get(self, task: str, relevance: str) -> TaskResult | None:
        rel = "self" if task in IDENTITY_TASKS else relevance
        return self.results.get((task, rel))

    def to_json(self) -> dict:
        tasks: dict[str, dict] = {}
        for (task, rel), res in self.results.items():
            tasks.setdefault(task, {})[rel] = res.to_json()
        return {
            "model": self.name,
            "split": self.split_source,
            "tasks": tasks,
            "skipped": self.skipped,
            "confidence": "95% percentile bootstrap over queries",
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")


def _score(
    task: str,
    relevance: str,
    queries: np.ndarray,
    retrieved: np.ndarray,
    hits: np.ndarray,
    n_rel: np.ndarray,
    n_resamples: int,
    seed: int,
) -> TaskResult:
    valid = n_rel > 0
    per_query = retrieval_metrics(hits, n_rel, ks=KS)
    summary = mean_cis(per_query, n_resamples=n_resamples, seed=seed)  # one draw, every metric
    h, n = hits[valid], n_rel[valid]
    depth = hits.shape[1]
    curve = (
        (np.cumsum(h, axis=1) / np.minimum(np.arange(1, depth + 1), n[:, None])).mean(axis=0)
        if len(h)
        else np.zeros(depth)
    )
    return TaskResult(
        task,
        relevance,
        per_query,
        summary,
        int(valid.sum()),
        int((~valid).sum()),
        curve,
        queries[valid],
        retrieved[valid],
        h,
    )


def _board_hits(
    graph, boards: np.ndarray, cold: np.ndarray, retrieved: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    is_cold = np.zeros(graph.n_pins, dtype=bool)
    is_cold[cold] = True
    hits = np.zeros(retrieved.shape, dtype=bool)
    n_rel = np.zeros(len(boards), dtype=np.int64)
    for i, b in enumerate(boards):
        pins = graph.pins_of(b)
        pins = pins[is_cold[pins]]
        n_rel[i] = len(pins)
        hits[i] = np.isin(retrieved[i], pins)
    return hits, n_rel


def evaluate_embedder(
    embedder: Embedder,
    data: EvalData,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    tasks: Collection[str] | None = None,
    console: Console | None = None,
) -> EvalResult:
    """Score `embedder` on every task (or only `tasks`, names of `TASKS`) over the split in
    `data`. This is the one scoring path: the report, `pinclip evaluate` and the demo's
    quick table all read their figures from it."""
    console = console or Console(quiet=True)
    unknown = set(tasks or ()) - set(TASKS)
    if unknown:
        raise InputError(f"unknown task(s) {sorted(unknown)}; known: {', '.join(TASKS)}")
    wanted = set(TASKS if tasks is None else tasks)
    emb = check_embeddings(embedder.embed_pins(data), data.n_pins, embedder.name)
    cold, warm = data.split.cold, data.split.warm
    results: dict[tuple[str, str], TaskResult] = {}
    skipped = {t: why for t, why in embedder.not_applicable.items() if t in wanted}
    wanted -= set(skipped)

    textless = cold[~data.catalog.has_text()[cold]]
    related = {
        "related_cold": (emb.pin, cold),
        "related_cold_image": (emb.image, cold),
        "related_cold_textless": (emb.pin, textless),
        "related_warm": (emb.pin, warm),
    }
    for task, (queries, pins) in related.items():
        if task not in wanted:
            continue
        if queries is None:
            skipped[task] = "the model has no image-only path"
            continue
        if len(pins) == 0:
            skipped[task] = "no such pins in this split"
            continue
        top = related_pins_topk(queries[pins], emb.pin, pins, DEPTH)
        for rel in data.relevances:
            hits, n_rel = related_pins_hits(data.relevance_graph(rel), pins, top)
            results[(task, rel)] = _score(task, rel, pins, top, hits, n_rel, n_resamples, seed)

    cross = {"text_to_image": (emb.text, emb.image), "image_to_text": (emb.image, emb.text)}
    for task, (queries, candidates) in cross.items():
        if task not in wanted:
            continue
        if queries is None or candidates is None:
            skipped[task] = "the model lacks a modality this task needs"
            continue
        top = exact_topk(queries[cold], candidates, DEPTH)
        hits = top == cold[:, None]
        results[(task, "self")] = _score(
            task, "self", cold, top, hits, np.ones(len(cold), np.int64), n_resamples, seed
        )
        if task in SELF_AND_BOARDS:  # board-mates' images, the pin's own excluded
            top = exact_topk(queries[cold], candidates, DEPTH, exclude=cold)
            for rel in data.relevances:
                hits, n_rel = related_pins_hits(data.relevance_graph(rel), cold, top)
                results[(task, rel)] = _score(task, rel, cold, top, hits, n_rel, n_resamples, seed)

    board_tasks = sorted(wanted & {"board_to_pins", "boards_for_cold", "new_board_to_pins"})
    board_emb = embedder.embed_texts(data.board_titles) if len(cold) and board_tasks else None
    if board_emb is None:
        skipped |= {task: "the model embeds no free text" for task in board_tasks}
    else:
        board_emb = board_emb.float()
        for rel in data.relevances:
            graph = data.relevance_graph(rel)
            boards = np.arange(graph.n_boards)  # board indices of the relevance graph
            index = boards if rel == "all" else np.flatnonzero(data.curated_boards)  # their titles
            if "board_to_pins" in wanted:
                top = exact_topk(
                    board_emb[torch.as_tensor(index)], emb.pin[torch.as_tensor(cold)], DEPTH
                )
                retrieved = cold[top]
                hits, n_rel = _board_hits(graph, boards, cold, retrieved)
                results[("board_to_pins", rel)] = _score(
                    "board_to_pins", rel, index, retrieved, hits, n_rel, n_resamples, seed
                )
            if "boards_for_cold" in wanted:
                # which boards would this new pin be saved to: its pin embedding vs board titles
                top = exact_topk(
                    emb.pin[torch.as_tensor(cold)], board_emb[torch.as_tensor(index)], DEPTH
                )
                member = graph.pin_board[cold].tocsr()
                hits = (
                    np.stack(
                        [
                            np.isin(top[i], member.indices[member.indptr[i] : member.indptr[i + 1]])
                            for i in range(len(cold))
                        ]
                    )
                    if len(cold)
                    else np.zeros((0, top.shape[1]), dtype=bool)
                )
                n_rel = np.diff(member.indptr).astype(np.int64)
                results[("boards_for_cold", rel)] = _score(
                    "boards_for_cold", rel, cold, top, hits, n_rel, n_resamples, seed
                )
            if "new_board_to_pins" in wanted:
                # held-out boards of this relevance; `graph` and `index` enumerate its boards
                new = np.flatnonzero(np.isin(index, data.held_out_boards))
                if len(new) == 0:
                    continue
                top = exact_topk(board_emb[torch.as_tensor(index[new])], emb.pin, DEPTH)
                hits = np.stack([np.isin(top[i], graph.pins_of(b)) for i, b in enumerate(new)])
                n_rel = graph.board_size[new].astype(np.int64)
                results[("new_board_to_pins", rel)] = _score(
                    "new_board_to_pins", rel, index[new], top, hits, n_rel, n_resamples, seed
                )
    if (
        board_emb is not None
        and "new_board_to_pins" in wanted
        and not any(task == "new_board_to_pins" for task, _ in results)
    ):
        skipped["new_board_to_pins"] = "no held-out board (data.board_holdout_frac = 0)"
    console.print(
        f"evaluated {embedder.name}: {len(results)} task × relevance results"
        + (f", skipped {', '.join(skipped)}" if skipped else "")
    )
    return EvalResult(
        embedder.name,
        results,
        emb,
        data.source,
        embedder.trained_on(),
        skipped,
        is_floor=embedder.is_floor,
    )
