"""The Material Design Icons catalog: a second real domain (UI icons), built offline from npm.

Source: the npm package `@iconify-json/mdi` (Iconify JSON of Pictogrammers' Material Design
Icons, Apache-2.0). Pins are the icons that are not hidden (deprecated), each icon's SVG body
rendered with resvg-py in black on white; the text is the icon's name split into words, plus
its aliases. Curated boards are the icon set's own categories (`metadata.json`, many-to-many:
an icon sits in 0-5 of them). Simulated user boards save popular icons of one to three
categories that share icons, or of one name family ("arrow", "weather"), so the icons no
category covers also sit on boards, as real uploads without a curator do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pinclip.data.catalog import IMAGES_DIR, write_catalog
from pinclip.errors import PinclipError

from ._render import render_svgs
from ._tables import fresh_output_dir
from .base import option, register_builder

PACKAGE = "@iconify-json/mdi"
VERSION = "1.2.3"
FILES = ("icons.json", "metadata.json", "info.json", "package.json")
MIN_FAMILY = 4  # a name family ("arrow-…") is a user-board theme when it has this many icons
FAMILY_SHARE = 0.3  # share of user boards themed on a name family rather than on categories


class MdiPackageError(PinclipError):
    """The @iconify-json/mdi package cannot be fetched or read."""


def fetch_package(version: str = VERSION, dest: Path | None = None) -> Path:
    """`npm pack @iconify-json/mdi@VERSION` into `dest` (a temporary directory by default)."""
    spec = f"{PACKAGE}@{version}"
    hint = (
        f"download it where npm works (`npm pack {spec}`) and pass the tarball with --package PATH"
    )
    npm = shutil.which("npm")
    if npm is None:
        raise MdiPackageError(
            f"cannot fetch {spec}: npm is not installed; install Node.js or {hint}"
        )
    dest = Path(dest or tempfile.mkdtemp(prefix="pinclip-mdi-"))
    dest.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(dest), "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MdiPackageError(f"cannot fetch {spec}: `npm pack` timed out; {hint}") from None
    tarballs = sorted(dest.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise MdiPackageError(
            f"cannot fetch {spec}: `npm pack` failed ({reason[-1] if reason else 'no output'}); {hint}"
        )
    return tarballs[0]


def read_package(tarball: Path) -> dict[str, dict]:
    """The JSON files of the npm tarball (read in memory: nothing is extracted to disk)."""
    tarball = Path(tarball)
    if not tarball.is_file():
        raise MdiPackageError(
            f"{tarball}: no such file; pass the .tgz made by `npm pack {PACKAGE}@{VERSION}`"
        )
    out: dict[str, dict] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for name in FILES:
                try:
                    member = tar.extractfile(f"package/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise MdiPackageError(
                        f"{tarball}: package/{name} is missing; is this the {PACKAGE} tarball?"
                    )
                out[name] = json.loads(member.read().decode("utf-8"))
    except (tarfile.TarError, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MdiPackageError(f"{tarball}: not a readable npm tarball ({e})") from None
    if out["package.json"].get("name") != PACKAGE:
        raise MdiPackageError(
            f"{tarball}: package.json names {out['package.json'].get('name')!r}, expected {PACKAGE}"
        )
    return out


def words(name: str) -> str:
    """'account-alert-outline' -> 'account alert outline'."""
    return name.replace("-", " ").replace("_", " ")


def icon_svg(body: str, width: int, height: int) -> str:
    """A standalone SVG of an Iconify body; `currentColor` becomes black."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'color="#000">{body}</svg>'
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _user_boards(
    pins: pd.DataFrame,
    categories: dict[str, list[str]],
    n_boards: int,
    rng: np.random.Generator,
    saved_until: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated users: a theme (1-3 related categories, or one name family) and popular icons of it."""
    index = {p: i for i, p in enumerate(pins["pin_id"])}
    popularity = rng.pareto(1.0, len(pins)) + 1.0  # power-law icon popularity
    cats = sorted(categories)
    members = [np.array(sorted(index[p] for p in categories[c]), dtype=np.int64) for c in cats]
    cat_p = np.array([len(m) if len(m) >= 2 else 0 for m in members], float) ** 0.5
    cat_p /= cat_p.sum()
    sets = [set(m.tolist()) for m in members]
    overlap = np.array([[len(a & b) if a is not b else 0 for b in sets] for a in sets], float)
    family_of = pins["family"].to_numpy()
    fam_counts = Counter(family_of)
    families = sorted(f for f, n in fam_counts.items() if n >= MIN_FAMILY)
    fam_members = {f: np.flatnonzero(family_of == f) for f in families}
    fam_p = np.array([fam_counts[f] for f in families], float) ** 0.5
    fam_p /= fam_p.sum()
    one = ("{a}", "my {a} icons", "{a} set", "best {a}", "{a} ui")
    many = ("{a} & {b}", "{a}, {b} and more", "my {a} and {b} icons")
    boards, edges = [], []
    for b in range(n_boards):
        if families and rng.random() < FAMILY_SHARE:
            fam = families[rng.choice(len(families), p=fam_p)]
            pool, names, desc = fam_members[fam], [fam], f"icons named {fam}-*"
        else:
            first = int(rng.choice(len(cats), p=cat_p))
            chosen = [first]
            extra = int(rng.integers(0, 3))
            weights = overlap[first].copy()
            for _ in range(extra):
                weights[chosen] = 0
                if weights.sum() == 0:
                    break
                chosen.append(int(rng.choice(len(cats), p=weights / weights.sum())))
            chosen.sort()
            pool = np.unique(np.concatenate([members[c] for c in chosen]))
            names = [cats[c].lower() for c in chosen]
            desc = "; ".join(cats[c] for c in chosen)
        size = int(min(len(pool), 2 + rng.zipf(1.8)))  # power-law board size, at least 2
        p = popularity[pool] / popularity[pool].sum()
        saved = np.sort(rng.choice(pool, size, replace=False, p=p))
        templates = one if len(names) == 1 else many
        title = templates[int(rng.integers(len(templates)))].format(a=names[0], b=names[-1])
        board_id = f"user-{b:05d}"
        boards.append((board_id, title, desc, "user"))
        days = rng.integers(0, 365 * 3, size)
        for i, d in zip(saved, days, strict=True):
            edges.append((pins.pin_id.iat[i], board_id, saved_until - pd.Timedelta(days=int(d))))
    return (
        pd.DataFrame(boards, columns=["board_id", "title", "description", "kind"]),
        pd.DataFrame(edges, columns=["pin_id", "board_id", "saved_at"]),
    )


@dataclass(frozen=True)
class MdiOptions:
    """The MDI builder's options: `pinclip catalog build mdi`'s flags are these fields."""

    package: Path | None = option(
        None,
        "The @iconify-json/mdi tarball (`npm pack @iconify-json/mdi@1.2.3`); "
        "default: run npm pack.",
    )
    size: int = option(128, "Image side in pixels.")
    user_boards: int = option(6000, "Number of simulated user boards.")
    seed: int = option(0, "Seed of the simulated user boards.")
    limit: int | None = option(None, "Keep only the first N icons (quick tests).")
    workers: int | None = option(None, "Render processes (default: up to 2).")


def _select_icons(iconset: dict, limit: int | None) -> dict[str, dict]:
    """The visible (not deprecated) icons in name order, the first `limit` when given.

    Name order makes `limit` pick the same icons on every run.
    """
    icons = {n: v for n, v in sorted(iconset["icons"].items()) if not v.get("hidden")}
    if limit is not None:
        icons = dict(list(icons.items())[:limit])
    if not icons:
        raise PinclipError("no icons selected: check --limit")
    return icons


def _aliases(iconset: dict, icons: dict[str, dict]) -> dict[str, list[str]]:
    """Each kept icon's aliases as words: only pure renames, which describe the same artwork."""
    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(iconset.get("aliases", {}).items()):
        parent = target.get("parent")
        if parent in icons and not set(target) - {"parent"}:  # pure renames only
            aliases.setdefault(parent, []).append(words(alias))
    return aliases


def _categories(
    metadata: dict, icons: dict[str, dict]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Category -> its kept icons (empty categories dropped), and icon -> its categories.

    The first becomes the curated boards; the second the pins' `categories` column.
    """
    categories = {
        c: sorted({n for n in names if n in icons})
        for c, names in metadata.get("categories", {}).items()
    }
    categories = {c: n for c, n in categories.items() if n}
    cats_of: dict[str, list[str]] = {}
    for c, names in sorted(categories.items()):
        for n in names:
            cats_of.setdefault(n, []).append(c)
    return categories, cats_of


def _pin_rows(
    icons: dict[str, dict],
    iconset: dict,
    aliases: dict[str, list[str]],
    cats_of: dict[str, list[str]],
    released: pd.Timestamp,
) -> pd.DataFrame:
    """One pin row per icon; an `-outline` icon points at its filled base when that is kept.

    The `_svg` column carries the icon's SVG to the render step and is dropped after it.
    """
    width, height = iconset.get("width", 16), iconset.get("height", 16)
    rows = []
    for name, icon in icons.items():
        base = name.removesuffix("-outline")
        rows.append(
            {
                "pin_id": name,
                "image": f"{IMAGES_DIR}/{name}.png",
                "title": words(name),
                "description": ", ".join(aliases.get(name, [])) or None,
                "link": f"https://pictogrammers.com/library/mdi/icon/{name}/",
                "created_at": released,
                "kind": "organic",
                "family": name.split("-")[0],
                "categories": "; ".join(cats_of.get(name, [])) or None,
                "base_pin_id": base if base != name and base in icons else None,
                "_svg": icon_svg(
                    icon["body"], icon.get("width", width), icon.get("height", height)
                ),
            }
        )
    return pd.DataFrame(rows)


def _render_pins(
    pins: pd.DataFrame, root: Path, size: int, workers: int, progress: bool
) -> pd.DataFrame:
    """Render every pin's SVG into `root`'s images; returns the pins without the `_svg` column."""
    render_svgs(
        [(s, str(root / img), size) for s, img in zip(pins["_svg"], pins["image"], strict=True)],
        workers=workers,
        progress=progress,
        label="rendering Material Design Icons",
    )
    return pins.drop(columns="_svg")


def _boards_and_edges(
    pins: pd.DataFrame,
    categories: dict[str, list[str]],
    user_boards: int,
    seed: int,
    released: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curated boards (one per category, sorted) then simulated user boards, and their edges.

    Curated first and the user boards from one seeded generator, so the tables are reproducible.
    """
    cat_names = sorted(categories)
    curated = pd.DataFrame(
        {
            "board_id": ["cat-" + _slug(c) for c in cat_names],
            "title": cat_names,
            "description": [f"Material Design Icons category {c}" for c in cat_names],
            "kind": "curated",
        }
    )
    curated_edges = pd.DataFrame(
        [(n, "cat-" + _slug(c), released) for c in cat_names for n in categories[c]],
        columns=["pin_id", "board_id", "saved_at"],
    )
    rng = np.random.default_rng(seed)
    users, user_edges = _user_boards(pins, categories, user_boards, rng, released)
    boards = pd.concat([curated, users], ignore_index=True)
    edges = pd.concat([curated_edges, user_edges], ignore_index=True)
    edges["saved_at"] = pd.to_datetime(edges["saved_at"], utc=True).astype("datetime64[s, UTC]")
    return boards, edges


def _catalog_meta(
    pkg: dict, pins: pd.DataFrame, size: int, user_boards: int, seed: int, limit: int | None
) -> dict:
    """catalog.json: the package's licence and attribution, a stat, and the build's arguments."""
    info, version = pkg["info.json"], pkg["package.json"]["version"]
    licence = info.get("license", {})
    author = info.get("author", {})
    return {
        "name": "mdi",
        "version": 1,
        "description": (
            "Material Design Icons as pins; the icon set's categories as curated boards "
            "(many-to-many); simulated user boards."
        ),
        "license": f"Icons {licence.get('title', pkg['package.json'].get('license'))} "
        f"({author.get('name', 'Pictogrammers')})",
        "attribution": [
            {
                "what": "icon artwork (images/), names, aliases and categories",
                "source": f"{info.get('name', 'Material Design Icons')} by "
                f"{author.get('name', 'Pictogrammers')}, {author.get('url', '')}; "
                f"Iconify JSON package {PACKAGE}@{version}",
                "license": f"{licence.get('spdx', pkg['package.json'].get('license'))} "
                f"({licence.get('url', '')})",
                "notice": "Brand icons (category 'Brand / Logo') depict trademarks of their owners; "
                "the licence covers the artwork, not the marks.",
                "version": version,
            }
        ],
        "stats": {
            "pins_without_category": int(pins["categories"].isna().sum()),
        },
        "build": {
            "builder": "mdi",
            "package": f"{PACKAGE}@{version}",
            "size": size,
            "user_boards": user_boards,
            "seed": seed,
            "limit": limit,
        },
    }


@register_builder(
    "mdi",
    MdiOptions,
    help="Real data: Material Design Icons, their categories as curated boards, "
    "simulated user boards.",
)
def build_mdi_catalog(
    out: str | Path,
    *,
    package: str | Path | None = None,
    size: int = 128,
    user_boards: int = 6000,
    seed: int = 0,
    limit: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Build the MDI catalog in `out`; same package and arguments give byte-identical files.

    `package` is the `npm pack` tarball of @iconify-json/mdi; without it the builder runs
    `npm pack @iconify-json/mdi@1.2.3` itself. `limit` keeps the first N icons (name order).
    """
    if size < 8:
        raise PinclipError(f"--size must be >= 8 pixels, got {size}")
    root = fresh_output_dir(out, overwrite)
    with tempfile.TemporaryDirectory(prefix="pinclip-mdi-") as tmp:
        tarball = Path(package) if package is not None else fetch_package(VERSION, Path(tmp))
        pkg = read_package(tarball)
    iconset = pkg["icons.json"]
    icons = _select_icons(iconset, limit)
    aliases = _aliases(iconset, icons)
    categories, cats_of = _categories(pkg["metadata.json"], icons)

    (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    released = pd.Timestamp(iconset.get("lastModified", 0), unit="s", tz="UTC").floor("D")
    pins = _pin_rows(icons, iconset, aliases, cats_of, released)
    pins = _render_pins(pins, root, size, workers, progress)
    boards, edges = _boards_and_edges(pins, categories, user_boards, seed, released)
    pins["created_at"] = pins["created_at"].astype("datetime64[s, UTC]")
    meta = _catalog_meta(pkg, pins, size, user_boards, seed, limit)
    return write_catalog(root, pins, boards, edges, meta)
