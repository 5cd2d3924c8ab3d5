"""Synthetic catalog of any size (10^3 … 10^7 pins) with known ground truth.

Latent topics (grouped in themes) each define a palette, a distribution over shapes and
textures and a small vocabulary. A pin has a primary topic (stored as `topic`) and sometimes a
secondary topic of the same theme; its image is drawn from that mix and its title/description
are noisy samples (word dropout, swaps, off-topic words) of the topics' vocabularies. User boards
mix 1–3 topics of one theme with power-law target sizes; every pin saves itself to a
power-law number of boards that contain its primary topic, so a board's pins always come from its
topics and pins sit on several boards.

Everything is streamed in fixed-size chunks: pins and edges go to parquet one row group per chunk
and images are drawn per shard directory (1000 files) in worker processes, so memory does not grow
with N (only the board table, about N/8 rows, is held). Randomness is keyed by (seed, chunk) for
metadata and (seed, pin index) for images, so the output does not depend on the worker count.
"""

from __future__ import annotations

import colorsys
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from pinclip.data.catalog import (
    BOARDS_FILE,
    EDGES_FILE,
    FORMAT_VERSION,
    META_FILE,
    PINS_FILE,
)
from pinclip.errors import InputError

from ._tables import TableStream, fresh_output_dir, write_json
from .base import option, register_builder

CHUNK = 20_000  # pins per metadata chunk (part of the seed contract: changing it changes output)
SHARD = 1000  # images per directory
EPOCH = 1_577_836_800  # 2020-01-01T00:00:00Z; created_at spans five years from here
SPAN = 5 * 365 * 86_400

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "bar")
TEXTURES = ("solid", "stripes", "dots", "checker", "gradient", "noise")
HUE_NAMES = [
    "red",
    "orange",
    "yellow",
    "lime",
    "green",
    "teal",
    "cyan",
    "azure",
    "blue",
    "violet",
    "magenta",
    "pink",
]  # 12 bins
THEME_WORDS = [
    "garden",
    "ocean",
    "city",
    "kitchen",
    "forest",
    "desert",
    "space",
    "festival",
    "studio",
    "mountain",
    "harbor",
    "market",
    "winter",
    "summer",
    "retro",
    "neon",
    "vintage",
    "tropical",
    "arctic",
    "circus",
    "jungle",
    "museum",
    "carnival",
    "meadow",
]
FILLERS = [
    "my",
    "the",
    "best",
    "ideas",
    "love",
    "cute",
    "cool",
    "new",
    "old",
    "little",
    "big",
    "favorite",
]

PINS_SCHEMA = pa.schema(
    [
        ("pin_id", pa.string()),
        ("image", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("link", pa.string()),
        ("created_at", pa.timestamp("s", tz="UTC")),
        ("kind", pa.string()),
        ("topic", pa.int32()),
        ("topic2", pa.int32()),
        ("topic_mix", pa.float32()),
    ]
)
BOARDS_SCHEMA = pa.schema(
    [
        ("board_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("kind", pa.string()),
        ("topics", pa.list_(pa.int32())),
    ]
)
EDGES_SCHEMA = pa.schema(
    [
        ("pin_id", pa.string()),
        ("board_id", pa.string()),
        ("saved_at", pa.timestamp("s", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class Topics:
    """The latent topics: what each one looks like and which words describe it."""

    theme: np.ndarray  # [T] theme index
    palette: np.ndarray  # [T, 4, 3] uint8: background, two shape colours, accent
    shape_p: np.ndarray  # [T, len(SHAPES)]
    texture_p: np.ndarray  # [T, len(TEXTURES)]
    popularity: np.ndarray  # [T] probability of a pin having this primary topic
    vocab: list[list[str]]  # [T] words, most typical first
    theme_words: list[str]

    @property
    def n(self) -> int:
        return len(self.theme)


def default_topics(pins: int) -> int:
    """50 topics for small catalogs, growing as sqrt(N)/2, at most 500."""
    return int(np.clip(round(math.sqrt(pins) / 2), 50, 500))


def pin_id(i: int) -> str:
    return f"s{i:08d}"


def image_relpath(i: int) -> str:
    """Sharded file name: images/<i // 1000>/<i>.png keeps directories at 1000 entries."""
    return f"images/{i // SHARD:05d}/{i:08d}.png"


def _pseudo_words(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    consonants, vowels = list("bcdfgklmnprstvz"), list("aeiou")
    words: list[str] = []
    while len(words) < n:
        k = int(rng.integers(2, 4))
        w = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(k))
        if w not in taken:
            taken.add(w)
            words.append(w)
    return words


def make_topics(n_topics: int, seed: int) -> Topics:
    """Draw the topic definitions (small: O(n_topics))."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    n_themes = max(5, n_topics // 10)
    theme = (np.arange(n_topics) * n_themes) // n_topics
    taken: set[str] = set(THEME_WORDS) | set(FILLERS) | set(HUE_NAMES)
    theme_words = list(THEME_WORDS[:n_themes])
    theme_words += _pseudo_words(rng, n_themes - len(theme_words), taken)

    hues = rng.random(n_topics)
    palette = np.zeros((n_topics, 4, 3), np.uint8)
    for t, h in enumerate(hues):
        spec = [
            (h, 0.15, 0.95),  # light background
            (h, 0.8, 0.85),
            ((h + 0.08) % 1, 0.7, 0.55),
            ((h + 0.5) % 1, 0.9, 0.9),  # complementary accent
        ]
        for j, (hh, s, v) in enumerate(spec):
            palette[t, j] = np.round(np.array(colorsys.hsv_to_rgb(hh, s, v)) * 255)
    shape_p = rng.dirichlet(np.full(len(SHAPES), 0.3), n_topics)
    texture_p = rng.dirichlet(np.full(len(TEXTURES), 0.3), n_topics)
    popularity = 1.0 / np.arange(1, n_topics + 1) ** 0.7
    popularity = rng.permutation(popularity / popularity.sum())

    vocab = []
    for t in range(n_topics):
        own = _pseudo_words(rng, 3, taken)
        vocab.append(
            own
            + [
                HUE_NAMES[int(hues[t] * len(HUE_NAMES)) % len(HUE_NAMES)],
                SHAPES[int(shape_p[t].argmax())],
                TEXTURES[int(texture_p[t].argmax())],
                theme_words[theme[t]],
            ]
        )
    return Topics(theme, palette, shape_p, texture_p, popularity, vocab, theme_words)


# ---------------------------------------------------------------- boards


@dataclass(frozen=True)
class Boards:
    """User boards and, per topic, the boards that contain it with their save probabilities."""

    topics: list[np.ndarray]  # [B] topic ids of each board
    index_topic: np.ndarray  # CSR-like, sorted by topic: entry -> topic
    index_board: np.ndarray  # entry -> board
    index_cum: np.ndarray  # topic + cumulative within-topic probability (monotonic overall)


def make_boards(topics: Topics, n_boards: int, seed: int) -> Boards:
    """Boards mix 1–3 topics of one theme; Pareto weights give power-law board sizes."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    T = topics.n
    if n_boards < T:
        raise InputError(f"need at least one board per topic: boards={n_boards} < topics={T}")
    by_theme = [np.flatnonzero(topics.theme == k) for k in range(topics.theme.max() + 1)]
    first = np.concatenate(
        [
            np.arange(min(T, n_boards)),
            rng.choice(T, n_boards - min(T, n_boards), p=topics.popularity),
        ]
    )
    n_extra = rng.choice(3, n_boards, p=[0.5, 0.3, 0.2])
    weight = rng.pareto(1.2, n_boards) + 1.0
    board_topics = []
    for b in range(n_boards):
        t0 = int(first[b])
        others = by_theme[topics.theme[t0]]
        others = others[others != t0]
        k = min(int(n_extra[b]), len(others))
        extra = rng.choice(others, k, replace=False) if k else np.empty(0, np.int64)
        board_topics.append(np.concatenate([[t0], np.sort(extra)]).astype(np.int32))

    entry_topic = np.concatenate(board_topics)
    entry_board = np.repeat(np.arange(n_boards), [len(t) for t in board_topics])
    order = np.lexsort((entry_board, entry_topic))
    entry_topic, entry_board = entry_topic[order], entry_board[order]
    w = weight[entry_board]
    starts = np.searchsorted(entry_topic, np.arange(T))
    ends = np.append(starts[1:], len(w))
    csum = np.concatenate([[0.0], np.cumsum(w)])
    cum = (csum[1:] - csum[starts[entry_topic]]) / (csum[ends] - csum[starts])[entry_topic]
    cum[ends - 1] = 1.0  # exact upper end, so a draw never spills into the next topic
    return Boards(board_topics, entry_topic, entry_board, entry_topic + cum)


def board_rows(topics: Topics, boards: Boards, seed: int) -> dict:
    """Plausible user-board titles from the topics' words."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    ids, titles, descriptions = [], [], []
    for b, ts in enumerate(boards.topics):
        words = [topics.vocab[t][int(rng.integers(0, 4))] for t in ts]
        theme = topics.theme_words[topics.theme[ts[0]]]
        style = int(rng.integers(0, 4))
        if style == 0:
            title = f"{theme} {' & '.join(words)}"
        elif style == 1:
            title = f"{rng.choice(FILLERS)} {' '.join(words)} {theme}"
        elif style == 2:
            title = f"{words[0]} ideas"
        else:
            title = f"{' '.join(words)}"
        ids.append(f"b{b:07d}")
        titles.append(title)
        descriptions.append("saved pins: " + ", ".join(" ".join(topics.vocab[t][:3]) for t in ts))
    return {
        "board_id": ids,
        "title": titles,
        "description": descriptions,
        "kind": ["user"] * len(ids),
        "topics": [t.tolist() for t in boards.topics],
    }


# ---------------------------------------------------------------- pins and edges


_WORD_CUM = np.cumsum(1 / np.arange(1, 8) ** 0.8)[:-1] / np.sum(1 / np.arange(1, 8) ** 0.8)


def captions(
    rng: np.random.Generator,
    topics: Topics,
    t1: np.ndarray,
    t2: np.ndarray,
    mix: np.ndarray,
    lo: int,
    hi: int,
) -> list[str]:
    """Noisy texts of lo..hi-1 words: Zipf over each topic's words, 10% dropout, off-topic, swaps."""
    n, L = len(t1), hi - 1
    t = np.where(rng.random((n, L)) < mix[:, None], t1[:, None], t2[:, None])
    t = np.where(rng.random((n, L)) < 0.1, rng.integers(0, topics.n, (n, L)), t)  # off-topic words
    words = np.asarray(topics.vocab, dtype=object)[
        t, np.searchsorted(_WORD_CUM, rng.random((n, L)))
    ]
    keep = (np.arange(L) < rng.integers(lo, hi, n)[:, None]) & (rng.random((n, L)) >= 0.1)
    keep[:, 0] |= ~keep.any(1)
    for j in range(L - 1):  # swap neighbouring words
        m = (rng.random(n) < 0.1) & keep[:, j] & keep[:, j + 1]
        words[m, j], words[m, j + 1] = words[m, j + 1], words[m, j]
    return [" ".join(w[k]) for w, k in zip(words, keep, strict=True)]


def make_chunk(
    topics: Topics, boards: Boards, start: int, stop: int, seed: int
) -> tuple[dict, dict]:
    """Pins [start, stop) and their board edges; depends only on (seed, chunk index)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3, start // CHUNK]))
    n = stop - start
    idx = np.arange(start, stop)
    t1 = rng.choice(topics.n, n, p=topics.popularity).astype(np.int32)
    theme_members = [np.flatnonzero(topics.theme == k) for k in range(topics.theme.max() + 1)]
    has2 = rng.random(n) < 0.4
    t2 = t1.copy()
    for i in np.flatnonzero(has2):
        members = theme_members[topics.theme[t1[i]]]
        t2[i] = members[rng.integers(len(members))]
    mix = np.where(t2 != t1, rng.uniform(0.6, 0.9, n), 1.0).astype(np.float32)
    created = EPOCH + rng.integers(0, SPAN, n)
    kind = np.where(rng.random(n) < 0.05, "ad", "organic")
    titles = captions(rng, topics, t1, t2, mix, 2, 5)
    descs = captions(rng, topics, t1, t2, mix, 5, 13)
    ids = [pin_id(i) for i in idx]
    pins = {
        "pin_id": ids,
        "image": [image_relpath(i) for i in idx],
        "title": titles,
        "description": descs,
        "link": [f"https://example.org/pin/{i}" for i in idx],
        "created_at": created.astype("datetime64[s]"),
        "kind": kind.tolist(),
        "topic": t1,
        "topic2": t2,
        "topic_mix": mix,
    }
    # power-law number of saves per pin, each to a board holding the pin's primary topic
    saves = 1 + np.minimum(rng.zipf(2.0, n), 30)
    e_pin = np.repeat(np.arange(n), saves)
    u = t1[e_pin] + rng.random(len(e_pin))
    pos = np.minimum(np.searchsorted(boards.index_cum, u, side="right"), len(boards.index_cum) - 1)
    e_board = boards.index_board[pos]
    pairs = np.unique(e_pin.astype(np.int64) * (len(boards.topics) + 1) + e_board)
    e_pin, e_board = pairs // (len(boards.topics) + 1), pairs % (len(boards.topics) + 1)
    saved = created[e_pin] + rng.exponential(30 * 86_400, len(e_pin)).astype(np.int64)
    edges = {
        "pin_id": [ids[i] for i in e_pin],
        "board_id": [f"b{b:07d}" for b in e_board],
        "saved_at": saved.astype("datetime64[s]"),
    }
    return pins, edges


# ---------------------------------------------------------------- images

IMAGE_COLUMNS = ("topic", "topic2", "topic_mix")
_TOPICS: Topics | None = None
_GRID: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _init_worker(topics: Topics) -> None:
    global _TOPICS
    _TOPICS = topics


def _texture(rng: np.random.Generator, kind: str, pal: np.ndarray, size: int) -> np.ndarray:
    if size not in _GRID:
        _GRID[size] = np.mgrid[0:size, 0:size].astype(np.float32)
    y, x = _GRID[size]
    a, b = pal[0].astype(np.float32), pal[3].astype(np.float32) * 0.3 + pal[0] * 0.7
    period = size / rng.uniform(4, 10)
    if kind == "stripes":
        ang = rng.uniform(0, math.pi)
        m = ((x * math.cos(ang) + y * math.sin(ang)) / period) % 2 < 1
    elif kind == "dots":
        m = (((x % period) - period / 2) ** 2 + ((y % period) - period / 2) ** 2) < (
            period / 4
        ) ** 2
    elif kind == "checker":
        m = ((x // period + y // period) % 2) == 0
    elif kind == "gradient":
        f = (x if rng.random() < 0.5 else y)[..., None] / size
        return a * (1 - f) + pal[1].astype(np.float32) * 0.5 * f + a * 0.5 * f
    elif kind == "noise":
        return a + rng.normal(0, 18, (size, size, 1)).astype(np.float32)
    else:
        m = np.zeros((size, size), bool)
    return np.where(m[..., None], b, a)


def _shape(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, color: tuple, size: int
) -> None:
    r = size * rng.uniform(0.12, 0.3)
    cx, cy = rng.uniform(r, size - r, 2)
    box = [cx - r, cy - r, cx + r, cy + r]
    rot = rng.uniform(0, 360)
    if kind == "circle":
        draw.ellipse(box, fill=color)
    elif kind == "ring":
        draw.ellipse(box, outline=color, width=max(2, int(r / 3)))
    elif kind == "square":
        draw.regular_polygon((cx, cy, r), 4, rotation=rot, fill=color)
    elif kind == "triangle":
        draw.regular_polygon((cx, cy, r), 3, rotation=rot, fill=color)
    elif kind == "diamond":
        draw.polygon(
            [(cx, cy - r), (cx + r * 0.6, cy), (cx, cy + r), (cx - r * 0.6, cy)], fill=color
        )
    elif kind == "star":
        ang = np.deg2rad(rot) + np.arange(10) * math.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        draw.polygon(
            list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang), strict=True)), fill=color
        )
    elif kind == "cross":
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=color)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=color)
    else:  # bar
        draw.rectangle([cx - r, cy - r / 4, cx + r, cy + r / 4], fill=color)


def draw_pin_image(
    topics: Topics, seed: int, i: int, t1: int, t2: int, mix: float, size: int
) -> Image.Image:
    """The image of pin i: a topic texture behind 2–5 shapes drawn from the topic mix."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4, i]))
    tex = TEXTURES[rng.choice(len(TEXTURES), p=topics.texture_p[t1])]
    arr = _texture(rng, tex, topics.palette[t1], size)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        t = t1 if rng.random() < mix else t2
        kind = SHAPES[rng.choice(len(SHAPES), p=topics.shape_p[t])]
        color = tuple(
            int(c) for c in topics.palette[t, int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))]
        )
        _shape(draw, rng, kind, color, size)
    return img


def _render_shard(args: tuple) -> int:
    root, seed, size, start, t1, t2, mix = args
    assert _TOPICS is not None
    for k in range(len(t1)):
        i = start + k
        path = Path(root) / image_relpath(i)
        if k == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        img = draw_pin_image(_TOPICS, seed, i, int(t1[k]), int(t2[k]), float(mix[k]), size)
        img.save(path, format="PNG", compress_level=3)
    return len(t1)


# ---------------------------------------------------------------- build


@dataclass(frozen=True)
class SyntheticOptions:
    """The synthetic builder's options: `pinclip catalog build synthetic`'s flags."""

    pins: int = option(10_000, "Number of pins (10^3 … 10^7).")
    seed: int = option(0, "Seed: same seed, same catalog.")
    size: int = option(64, "Image side in pixels.")
    topics: int | None = option(None, "Latent topics (default: 50…500 by N).")
    boards: int | None = option(None, "User boards (default: max(topics, N/8)).")
    workers: int | None = option(
        None, "Drawing processes (default: up to 2); output does not depend on it."
    )


@register_builder(
    "synthetic",
    SyntheticOptions,
    help="Any size, known ground truth: procedurally drawn pins from latent topics.",
)
def build_synthetic_catalog(
    out: str | Path,
    *,
    pins: int,
    seed: int = 0,
    size: int = 64,
    topics: int | None = None,
    boards: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic catalog of `pins` pins to `out`; same arguments give the same files.

    `topics` defaults to `default_topics(pins)`, `boards` to max(topics, pins // 8). `workers`
    (default: up to 2 processes, 1 for small N) only changes speed, never the output.
    """
    if pins < 1:
        raise InputError(f"--pins must be >= 1, got {pins}")
    if size < 16:
        raise InputError(f"--size must be >= 16 pixels, got {size}")
    root = fresh_output_dir(out, overwrite)
    n_topics = topics or default_topics(pins)
    n_boards = boards or max(n_topics, pins // 8)
    if workers is None:  # below a few shards, starting processes costs more than it saves
        workers = 1 if pins <= 2 * SHARD else min(2, os.cpu_count() or 1)

    topic_defs = make_topics(n_topics, seed)
    board_defs = make_boards(topic_defs, n_boards, seed)
    with TableStream(root / BOARDS_FILE, BOARDS_SCHEMA) as bs:
        bs.write(board_rows(topic_defs, board_defs, seed))

    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(topic_defs,),
        )
    else:
        _init_worker(topic_defs)
    bar = _progress(progress)
    try:
        with (
            bar,
            TableStream(root / PINS_FILE, PINS_SCHEMA) as ps,
            TableStream(root / EDGES_FILE, EDGES_SCHEMA) as es,
        ):
            task = bar.add_task(f"synthetic {pins:,} pins", total=pins)
            pending: list = []  # image jobs of the previous chunk, drawn while this one is made
            for start in range(0, pins, CHUNK):
                stop = min(start + CHUNK, pins)
                p, e = make_chunk(topic_defs, board_defs, start, stop, seed)
                jobs = [
                    (
                        str(root),
                        seed,
                        size,
                        s,
                        *(p[c][s - start : s - start + SHARD] for c in IMAGE_COLUMNS),
                    )
                    for s in range(start, stop, SHARD)
                ]
                futures = [pool.submit(_render_shard, j) for j in jobs] if pool else []
                ps.write(p)
                es.write(e)
                for f in pending:
                    bar.advance(task, f.result())
                pending = futures
                if not pool:
                    for j in jobs:
                        bar.advance(task, _render_shard(j))
            for f in pending:
                bar.advance(task, f.result())
            n_edges = es.rows
    finally:
        if pool:
            pool.shutdown()

    write_json(
        root / META_FILE,
        {
            "name": "synthetic",
            "version": 1,
            "description": "Procedurally drawn pins from latent topics; ground truth in pins.topic "
            "and boards.topics.",
            "license": "CC0-1.0 (generated data)",
            "attribution": "Generated by pinclip.data.builders.synthetic",
            "counts": {
                "pins": pins,
                "boards": n_boards,
                "edges": int(n_edges),
                "curated_boards": 0,
                "user_boards": n_boards,  # every synthetic board is a user board
            },
            "format_version": FORMAT_VERSION,
            "build": {
                "builder": "synthetic",
                "seed": seed,
                "size": size,
                "topics": n_topics,
                "boards": n_boards,
                "chunk": CHUNK,
                "image_layout": f"images/<pin // {SHARD}>/<pin>.png",
            },
        },
    )
    return root


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )
