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

Each task is one function registered in `EVAL_TASKS` (`register_task`): it returns what it
retrieved per relevance, and `evaluate_embedder` scores every registered task the same way
(per-query metrics, bootstrap CIs). `TASKS` (name -> label) is a view of that table; the
report, `pinclip evaluate --task` and tests/evaluate/test_tasks.py read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from rich.console import Console

from pinclip.atomic import atomic_write_text
from pinclip.errors import InputError
from pinclip.registry import Registry
from pinclip.retrieval import exact_topk, related_pins_hits, related_pins_topk, retrieval_metrics

from .baselines.base import Embedder, PinEmbeddings, check_embeddings
from .bootstrap import mean_cis
from .data import EvalData


@dataclass(frozen=True)
class Task:
    """A registered evaluation task.

    `retrieve(run)` returns, per relevance it is scored under, what it retrieved: (query ids,
    retrieved [Q, DEPTH] candidate ids, hits [Q, DEPTH] bool, relevant count per query); or a
    string, the reason it is n/a for this model or split. `relevances` says which relevances
    a report lists it under: "boards" (each board relevance of the catalog), "self" (the
    pin's own counterpart only) or "self+boards".
    """

    retrieve: Callable[[TaskRun], dict[str, Retrieved] | str]
    label: str
    relevances: Literal["boards", "self", "self+boards"] = "boards"


#: the evaluation tasks, in the report's order (`register_task` adds one)
EVAL_TASKS: Registry[Task] = Registry("evaluation task")


def register_task(
    name: str, label: str, relevances: Literal["boards", "self", "self+boards"] = "boards"
) -> Callable[[Callable], Callable]:
    """Decorator: `retrieve(run)` becomes the task `name` (labelled `label` in reports)."""

    def wrap(retrieve: Callable) -> Callable:
        EVAL_TASKS.add(name, Task(retrieve, label, relevances), help=label)
        return retrieve

    return wrap


class _Labels(Mapping[str, str]):
    """`TASKS`: task name -> label, a live read-only view of `EVAL_TASKS`."""

    def __getitem__(self, name: str) -> str:
        if name not in EVAL_TASKS:
            raise KeyError(name)
        return EVAL_TASKS.get(name).label

    def __iter__(self) -> Iterator[str]:
        return iter(EVAL_TASKS.names())

    def __len__(self) -> int:
        return len(EVAL_TASKS)


TASKS: Mapping[str, str] = _Labels()


def task_relevances(task: str, relevances: tuple[str, ...]) -> tuple[str, ...]:
    """The relevances a task is scored under, given the catalog's board relevances."""
    kind = EVAL_TASKS.get(task).relevances
    return {"self": ("self",), "self+boards": ("self", *relevances)}.get(kind, relevances)


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
        rel = (
            "self"
            if task in EVAL_TASKS and EVAL_TASKS.get(task).relevances == "self"
            else relevance
        )
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


@dataclass
class TaskRun:
    """What every task reads: the split (`data`), the model's pin embeddings, the model."""

    embedder: Embedder
    data: EvalData
    emb: PinEmbeddings

    @property
    def cold(self) -> np.ndarray:
        return self.data.split.cold

    @cached_property
    def board_titles(self) -> torch.Tensor | None:
        """The board titles through `embed_texts` (once per run; None: no free text, or no
        cold pin to score board tasks on)."""
        if not len(self.cold):
            return None
        emb = self.embedder.embed_texts(self.data.board_titles)
        return None if emb is None else emb.float()

    def board_index(self, relevance: str) -> np.ndarray:
        """The board ids of `relevance`'s graph, as rows of `board_titles`."""
        n = self.data.relevance_graph(relevance).n_boards
        return np.arange(n) if relevance == "all" else np.flatnonzero(self.data.curated_boards)


#: (query ids, retrieved [Q, DEPTH], hits [Q, DEPTH], relevant count per query)
Retrieved = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
NO_FREE_TEXT = "the model embeds no free text"


def _related(run: TaskRun, queries: torch.Tensor | None, pins: np.ndarray):
    """Related pins: `queries[pins]` against every pin's `pin` embedding, its own excluded."""
    if queries is None:
        return "the model has no image-only path"
    if len(pins) == 0:
        return "no such pins in this split"
    top = related_pins_topk(queries[pins], run.emb.pin, pins, DEPTH)
    return {
        rel: (pins, top, *related_pins_hits(run.data.relevance_graph(rel), pins, top))
        for rel in run.data.relevances
    }


@register_task("related_cold", "related pins, cold (image+text)")
def related_cold(run: TaskRun):
    return _related(run, run.emb.pin, run.cold)


@register_task("related_cold_image", "related pins, cold (image only)")
def related_cold_image(run: TaskRun):
    return _related(run, run.emb.image, run.cold)


@register_task("related_cold_textless", "related pins, cold image-only pins")
def related_cold_textless(run: TaskRun):
    cold = run.cold
    return _related(run, run.emb.pin, cold[~run.data.catalog.has_text()[cold]])


@register_task("related_warm", "related pins, warm")
def related_warm(run: TaskRun):
    return _related(run, run.emb.pin, run.data.split.warm)


def _cross(run: TaskRun, queries, candidates, board_mates: bool):
    """A cold pin's one modality against every pin's other: its own counterpart ('self'),
    and with `board_mates` its board-mates' (its own excluded) under each relevance."""
    if queries is None or candidates is None:
        return "the model lacks a modality this task needs"
    cold = run.cold
    top = exact_topk(queries[cold], candidates, DEPTH)
    out = {"self": (cold, top, top == cold[:, None], np.ones(len(cold), np.int64))}
    if board_mates:
        top = exact_topk(queries[cold], candidates, DEPTH, exclude=cold)
        for rel in run.data.relevances:
            out[rel] = (cold, top, *related_pins_hits(run.data.relevance_graph(rel), cold, top))
    return out


@register_task("text_to_image", "text → image (cold)", relevances="self+boards")
def text_to_image(run: TaskRun):
    return _cross(run, run.emb.text, run.emb.image, board_mates=True)


@register_task("image_to_text", "image → text (cold)", relevances="self")
def image_to_text(run: TaskRun):
    return _cross(run, run.emb.image, run.emb.text, board_mates=False)


@register_task("board_to_pins", "board → cold pins")
def board_to_pins(run: TaskRun):
    """A board's title against the cold pins (warm pins of the board would crowd them out)."""
    titles, cold = run.board_titles, run.cold
    if titles is None:
        return NO_FREE_TEXT
    out = {}
    for rel in run.data.relevances:
        graph, index = run.data.relevance_graph(rel), run.board_index(rel)
        top = exact_topk(titles[torch.as_tensor(index)], run.emb.pin[torch.as_tensor(cold)], DEPTH)
        retrieved = cold[top]
        hits, n_rel = _board_hits(graph, np.arange(graph.n_boards), cold, retrieved)
        out[rel] = (index, retrieved, hits, n_rel)
    return out


@register_task("boards_for_cold", "cold pin → its boards")
def boards_for_cold(run: TaskRun):
    """Which boards would this new pin be saved to: its pin embedding vs board titles."""
    titles, cold = run.board_titles, run.cold
    if titles is None:
        return NO_FREE_TEXT
    out = {}
    for rel in run.data.relevances:
        graph, index = run.data.relevance_graph(rel), run.board_index(rel)
        top = exact_topk(run.emb.pin[torch.as_tensor(cold)], titles[torch.as_tensor(index)], DEPTH)
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
        out[rel] = (cold, top, hits, np.diff(member.indptr).astype(np.int64))
    return out


@register_task("new_board_to_pins", "new board's title → pins")
def new_board_to_pins(run: TaskRun):
    """A held-out board's title (never a board-tower positive in training) against all pins."""
    titles = run.board_titles
    if titles is None:
        return NO_FREE_TEXT
    out = {}
    for rel in run.data.relevances:
        graph, index = run.data.relevance_graph(rel), run.board_index(rel)
        new = np.flatnonzero(np.isin(index, run.data.held_out_boards))  # rows of this graph
        if len(new) == 0:
            continue
        top = exact_topk(titles[torch.as_tensor(index[new])], run.emb.pin, DEPTH)
        hits = np.stack([np.isin(top[i], graph.pins_of(b)) for i, b in enumerate(new)])
        out[rel] = (index[new], top, hits, graph.board_size[new].astype(np.int64))
    return out or "no held-out board (data.board_holdout_frac = 0)"


def evaluate_embedder(
    embedder: Embedder,
    data: EvalData,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    tasks: Collection[str] | None = None,
    console: Console | None = None,
) -> EvalResult:
    """Score `embedder` on every registered task (or only `tasks`, names in `EVAL_TASKS`)
    over the split in `data`. This is the one scoring path: the report, `pinclip evaluate`
    and the demo's quick table all read their figures from it."""
    console = console or Console(quiet=True)
    unknown = set(tasks or ()) - set(TASKS)
    if unknown:
        raise InputError(f"unknown task(s) {sorted(unknown)}; known: {', '.join(TASKS)}")
    wanted = set(TASKS if tasks is None else tasks)
    emb = check_embeddings(embedder.embed_pins(data), data.n_pins, embedder.name)
    run = TaskRun(embedder, data, emb)
    results: dict[tuple[str, str], TaskResult] = {}
    skipped = {t: why for t, why in embedder.not_applicable.items() if t in wanted}
    for task in TASKS:  # registration order: the report's
        if task not in wanted or task in skipped:
            continue
        retrieved = EVAL_TASKS.get(task).retrieve(run)
        if isinstance(retrieved, str):
            skipped[task] = retrieved
            continue
        for rel, (queries, top, hits, n_rel) in retrieved.items():
            results[(task, rel)] = _score(task, rel, queries, top, hits, n_rel, n_resamples, seed)
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
