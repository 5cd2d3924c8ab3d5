"""The report people open: report.md, report.html and PNG plots from `EvalResult`s.

Plots (matplotlib, Agg): grouped Recall@10 bars with 95% CIs per task, recall@k curves,
training-loss curves from the runs' metrics.jsonl, a 2-D t-SNE map (scikit-learn) of pin
embeddings coloured by the catalog's `group`, and galleries of cold queries beside their
top-10 related pins with hits marked.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from pinclip.atomic import atomic_write_text, write_with  # noqa: E402

from .bootstrap import ratio_ci  # noqa: E402
from .data import EvalData  # noqa: E402
from .tasks import TASKS, EvalResult, task_relevances  # noqa: E402

HEADLINE_TASKS = ("related_cold", "related_cold_image")
HEADLINE_METRIC = "recall@10"


@dataclass
class HeadlineRow:
    task: str
    reference: str
    ours: float
    theirs: float
    ratio: float
    low: float
    high: float


def _fmt(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def headline(
    results: list[EvalResult],
    ours: str,
    relevance: str = "curated",
    metric: str = HEADLINE_METRIC,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[HeadlineRow]:
    """`ours` vs every other model on the cold related-pins tasks: ratio of means, paired CI."""
    mine = next(r for r in results if r.name == ours)
    rows = []
    for task in HEADLINE_TASKS:
        a = mine.get(task, relevance)
        if a is None:
            continue
        for other in results:
            b = other.get(task, relevance)
            if other.name == ours or b is None:
                continue
            ratio, lo, hi = ratio_ci(
                a.per_query[metric], b.per_query[metric], n_resamples=n_resamples, seed=seed
            )
            rows.append(
                HeadlineRow(
                    task, other.name, a.summary[metric][0], b.summary[metric][0], ratio, lo, hi
                )
            )
    return rows


def ci_reading(low: float, high: float, reference: str) -> str:
    """How a ratio's 95% CI reads against `reference`: the one rule of the report, the demo
    and the benchmarks (the CI says whether a gain is real; what gain is enough is the
    reader's goal)."""
    if low > 1.0:
        return f"above {reference} (the CI excludes 1)"
    if high < 1.0:
        return f"below {reference} (the CI excludes 1)"
    return f"not distinguishable from {reference} (the CI includes 1)"


def best_baseline(
    results: list[EvalResult],
    ours: str,
    task: str = "related_cold",
    relevance: str = "curated",
    exclude: tuple[str, ...] = (),
) -> str | None:
    """The strongest other model on `task` by Recall@10; a floor (random) never counts."""
    scored = [
        (r.get(task, relevance).summary[HEADLINE_METRIC][0], r.name)
        for r in results
        if r.name != ours
        and r.name not in exclude
        and not r.is_floor
        and r.get(task, relevance) is not None
    ]
    return max(scored)[1] if scored else None


def metrics_table(
    results: list[EvalResult], relevance: str, metric: str = HEADLINE_METRIC
) -> pd.DataFrame:
    """Models × tasks, cells 'mean [low, high]' of `metric` ('n/a' when a modality is missing)."""
    rows = {}
    for r in results:
        row = {}
        for task, label in TASKS.items():
            res = r.get(task, relevance)
            row[label] = _fmt(res.summary[metric]) if res is not None else "n/a"
        rows[r.name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def task_table(results: list[EvalResult], task: str, relevance: str) -> pd.DataFrame:
    """Models × every metric for one task."""
    rows = {}
    for r in results:
        res = r.get(task, relevance)
        if res is not None:
            rows[r.name] = {m: _fmt(v) for m, v in res.summary.items()} | {"queries": res.n_queries}
    return pd.DataFrame.from_dict(rows, orient="index")


def _markdown(df: pd.DataFrame, index: str = "model") -> str:
    cols = [index, *map(str, df.columns)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [
        "| " + " | ".join([str(i), *map(str, row)]) + " |"
        for i, row in zip(df.index, df.to_numpy(), strict=True)
    ]
    return "\n".join(lines)


# ---- plots -----------------------------------------------------------------------------------
def _savefig(fig, path: Path, dpi: int) -> None:
    """A plot's PNG, written atomically like every other file of the report."""
    write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))


def plot_metric_bars(
    results: list[EvalResult], relevance: str, path: Path, metric: str = HEADLINE_METRIC
) -> Path:
    tasks = list(TASKS)
    fig, ax = plt.subplots(figsize=(13, 5.5))
    width = 0.8 / len(results)
    x = np.arange(len(tasks))
    colours = model_colours(results)
    for i, r in enumerate(results):
        vals = [
            r.get(t, relevance).summary[metric] if r.get(t, relevance) else (np.nan,) * 3
            for t in tasks
        ]
        mean = np.array([v[0] for v in vals])
        err = np.array([[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]])
        ax.bar(
            x + (i - (len(results) - 1) / 2) * width,
            mean,
            width,
            yerr=err,
            capsize=2,
            label=r.name,
            color=colours[r.name],
        )
    ax.set_xticks(x, [TASKS[t] for t in tasks], rotation=15, ha="right", fontsize=9)
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title(
        f"{metric} per task, relevance = {relevance} boards (n/a bars are missing modalities)"
    )
    ax.legend(fontsize=8, ncols=min(len(results), 4), loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _savefig(fig, path, 110)
    plt.close(fig)
    return path


def model_colours(results: list[EvalResult]) -> dict[str, tuple]:
    """One colour per model for every plot: a panel where a model is n/a must not shift the
    colours of the others (each axis restarts matplotlib's colour cycle)."""
    cmap = plt.get_cmap("tab10" if len(results) <= 10 else "tab20")
    return {r.name: cmap(i % cmap.N) for i, r in enumerate(results)}


def plot_recall_curves(results: list[EvalResult], relevance: str, path: Path) -> Path:
    """Recall@k per task; one legend for the figure, each model in its own colour everywhere
    (a per-axis legend named the lines of another panel when a model was n/a there)."""
    tasks = ("related_cold", "related_cold_image", "related_warm", "board_to_pins")
    colours = model_colours(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.6), sharey=True)
    for ax, task in zip(axes, tasks, strict=True):
        for r in results:
            res = r.get(task, relevance)
            if res is not None:
                ax.plot(
                    np.arange(1, len(res.recall_curve) + 1),
                    res.recall_curve,
                    label=r.name,
                    color=colours[r.name],
                )
        ax.set_title(TASKS[task], fontsize=10)
        ax.set_xlabel("k")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"mean recall@k ({relevance} boards)")
    axes[0].set_ylim(0, 1.02)
    handles = [plt.Line2D([], [], color=colours[r.name], label=r.name) for r in results]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncols=min(len(results), 8))
    fig.suptitle(
        "recall@k = relevant found in the top k / min(k, #relevant): it can dip while k < #relevant",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _savefig(fig, path, 110)
    plt.close(fig)
    return path


def read_losses(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, loss) of the training rows of a run's metrics.jsonl."""
    steps, losses = [], []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            steps.append(row["step"])
            losses.append(row["loss"])
    return np.asarray(steps), np.asarray(losses)


def plot_loss_curves(results: list[EvalResult], path: Path) -> Path | None:
    runs = [(r.name, r.loss_log) for r in results if r.loss_log]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, run in runs:
        steps, loss = read_losses(run)
        ax.plot(steps, loss, alpha=0.35)
        window = max(1, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(
            steps[window - 1 :],
            smooth,
            color=ax.lines[-1].get_color(),
            label=f"{name} (moving avg {window})",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (each model's own objective)")
    ax.set_title("Training loss from the runs' metrics.jsonl")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, path, 110)
    plt.close(fig)
    return path


def pin_groups(data: EvalData) -> np.ndarray:
    """A label per pin for colouring: the catalog's `group`, else its first board."""
    pins = data.catalog.pins
    if "group" in pins:
        return pins["group"].fillna("(none)").astype(str).to_numpy()
    first = [data.graph.boards_of(p) for p in range(data.n_pins)]
    return np.array([str(data.graph.board_ids[b[0]]) if len(b) else "(none)" for b in first])


MAP_PINS = 1000  # pins on the 2-D map: every cold pin up to this, then a seeded warm sample
MAP_ITERATIONS = 500  # t-SNE iterations (250 of them early exaggeration): the layout settles


def map_pins(data: EvalData, limit: int = MAP_PINS, seed: int = 0) -> np.ndarray:
    """The pins the 2-D map shows: cold pins first, the rest drawn at random (sorted ids).

    t-SNE costs grow faster than the catalog; a bounded sample keeps the map's cost fixed."""
    if data.n_pins <= limit:
        return np.arange(data.n_pins)
    rng = np.random.default_rng(seed)
    cold = data.split.cold
    cold = cold if len(cold) <= limit else rng.choice(cold, limit, replace=False)
    rest = np.setdiff1d(np.arange(data.n_pins), cold)
    return np.sort(np.concatenate([cold, rng.choice(rest, limit - len(cold), replace=False)]))


def plot_embedding_map(
    results: list[EvalResult], data: EvalData, path: Path, seed: int = 0
) -> Path:
    """t-SNE of each model's `pin` embeddings (up to 3 models, `map_pins` of the catalog),
    coloured by pin group."""
    from sklearn.manifold import TSNE

    pins = map_pins(data, seed=seed)
    groups = pin_groups(data)[pins]
    names = sorted(set(groups))
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    colour = {g: cmap(i % 20) for i, g in enumerate(names)}
    is_cold = np.zeros(data.n_pins, dtype=bool)
    is_cold[data.split.cold] = True
    cold = is_cold[pins]
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 6), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        xy = TSNE(
            n_components=2,
            init="pca",
            random_state=seed,
            perplexity=min(30, len(pins) - 1),
            max_iter=MAP_ITERATIONS,
        ).fit_transform(r.embeddings.pin[torch.as_tensor(pins)].numpy())
        for g in names:
            m = groups == g
            ax.scatter(xy[m & ~cold, 0], xy[m & ~cold, 1], s=6, color=colour[g], alpha=0.6, label=g)
            ax.scatter(
                xy[m & cold, 0],
                xy[m & cold, 1],
                s=22,
                color=colour[g],
                marker="^",
                edgecolors="black",
                linewidths=0.4,
            )
        ax.set_title(f"{r.name}: {len(pins)} pin embeddings (t-SNE); ▲ = cold pins", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(
        fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), title="group"
    )
    fig.tight_layout()
    _savefig(fig, path, 100)
    plt.close(fig)
    return path


def plot_gallery(
    result: EvalResult,
    data: EvalData,
    path: Path,
    relevance: str = "curated",
    task: str = "related_cold",
    n_queries: int = 5,
    k: int = 10,
    seed: int = 0,
) -> Path | None:
    """Cold query images beside their top-k retrieved pins; green frame = relevant, red = not."""
    res = result.get(task, relevance)
    if res is None or len(res.queries) == 0:
        return None
    rng = np.random.default_rng(seed)
    rows = np.sort(
        rng.choice(len(res.queries), size=min(n_queries, len(res.queries)), replace=False)
    )
    images = data.catalog.pins["image"].tolist()
    titles = data.catalog.pins["title"].fillna("").astype(str).tolist()
    k = min(k, res.retrieved.shape[1])
    fig, axes = plt.subplots(
        len(rows), k + 1, figsize=(1.5 * (k + 1), 1.75 * len(rows)), squeeze=False
    )
    for ax_row, row in zip(axes, rows, strict=True):
        q = int(res.queries[row])
        cells = [(q, None)] + [
            (int(p), bool(h))
            for p, h in zip(res.retrieved[row, :k], res.hits[row, :k], strict=True)
        ]
        for ax, (pin, hit) in zip(ax_row, cells, strict=True):
            ax.imshow(data.catalog.load_image(images[pin]))
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "black" if hit is None else ("#1a9e3a" if hit else "#d62728")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4 if hit is not None else 2)
            ax.set_title(("QUERY: " if hit is None else "") + titles[pin][:18], fontsize=7)
    found = res.hits[rows, :k].sum()
    fig.suptitle(
        f"{result.name} — {TASKS[task]}: cold query (left) and its top-{k}; "
        f"green = shares a {relevance} board, red = does not ({found}/{len(rows) * k} hits)",
        fontsize=10,
    )
    fig.tight_layout()
    _savefig(fig, path, 100)
    plt.close(fig)
    return path


# ---- the report ----------------------------------------------------------------------------
def _write_plots(
    results: list[EvalResult],
    data: EvalData,
    out: Path,
    ours: str,
    best: str | None,
    seed: int,
) -> dict[str, Path | None]:
    """Every report plot, titled; None where a plot does not apply (e.g. no loss log).

    Maps and galleries only for ours and the best baseline: the two the headline compares.
    """
    main_rel = data.headline_relevance
    plots: dict[str, Path | None] = {}
    for rel in data.relevances:
        plots[f"Recall@10 per task ({rel} boards)"] = plot_metric_bars(
            results, rel, out / f"metric_bars_{rel}.png"
        )
    plots["Recall@k curves"] = plot_recall_curves(results, main_rel, out / "recall_curves.png")
    plots["Training loss curves"] = plot_loss_curves(results, out / "loss_curves.png")
    mapped = [r for r in results if r.name in (ours, best)]
    plots["2-D map of pin embeddings"] = plot_embedding_map(
        mapped, data, out / "embedding_map.png", seed=seed
    )
    for r in mapped:
        plots[f"Gallery: {r.name}"] = plot_gallery(
            r, data, out / f"gallery_{_slug(r.name)}.png", main_rel, seed=seed
        )
        plots[f"Gallery (image only): {r.name}"] = plot_gallery(
            r,
            data,
            out / f"gallery_image_only_{_slug(r.name)}.png",
            main_rel,
            task="related_cold_image",
            seed=seed,
        )
    return plots


def _headline_frame(head: list[HeadlineRow]) -> pd.DataFrame:
    """The paired-bootstrap headline rows as a table indexed by task (empty without rows)."""
    if not head:
        return pd.DataFrame()
    return pd.DataFrame(
        [
            {
                "task": TASKS[h.task],
                "vs": h.reference,
                f"ours {HEADLINE_METRIC}": f"{h.ours:.3f}",
                f"their {HEADLINE_METRIC}": f"{h.theirs:.3f}",
                "ratio [95% CI]": f"{h.ratio:.2f}× [{h.low:.2f}, {h.high:.2f}]",
            }
            for h in head
        ]
    ).set_index("task")


def _verdict(
    results: list[EvalResult],
    head: list[HeadlineRow],
    ours: str,
    best: str | None,
    main_rel: str,
) -> str:
    """The report's opening sentence: ours vs the best baseline on cold related pins, read
    through its CI, plus the strongest training-free baseline, so the reader sees the answer first.
    """
    verdict = ""
    if best is None and len(results) > 1:
        verdict = (
            f"**Headline:** no baseline to read {ours} against besides the random floor: add "
            "one (minilm, lite0, minilm+lite0, open_clip:RUN) to the comparison."
        )
    if best is not None:
        row = next((h for h in head if h.task == "related_cold" and h.reference == best), None)
        if row is not None:
            verdict = (
                f"**Headline:** on cold related pins ({main_rel} boards), {ours} reaches Recall@10 "
                f"{row.ours:.3f} vs {row.theirs:.3f} for the best baseline ({best}): "
                f"{row.ratio:.2f}× [95% CI {row.low:.2f}–{row.high:.2f}], "
                f"{ci_reading(row.low, row.high, 'the best baseline')}."
            )
    free = best_baseline(
        results, ours, relevance=main_rel, exclude=tuple(r.name for r in results if r.loss_log)
    )
    if free is not None:  # e.g. the foundation's own zero-shot (`zero-shot:SPEC`)
        score = results[[r.name for r in results].index(free)].get("related_cold", main_rel)
        low, high = score.summary[HEADLINE_METRIC][1:]
        verdict += (
            f"\n\nStrongest training-free baseline on cold related pins: **{free}** "
            f"(Recall@10 {score.summary[HEADLINE_METRIC][0]:.3f} [{low:.3f}, {high:.3f}])."
        )
    return verdict


def _sections(data: EvalData, n_resamples: int, seed: int) -> list[tuple[str, str]]:
    """Titled prose sections shared by report.md and report.html: the split and the method."""
    return [
        (
            "Split",
            f"{data.source}: {data.n_pins} pins, {len(data.split.warm)} warm, {len(data.split.val)} val, "
            f"{len(data.split.cold)} cold (never seen in training). Exact search; 95% percentile bootstrap "
            f"CIs over queries ({n_resamples} resamples, seed {seed}). Relevance = shares a board "
            f"({', '.join(data.relevances)} boards)."
            + "".join(f" **Warning: {w}.**" for w in data.split.too_small()),
        ),
    ]


@dataclass
class _Report:
    """What report.md and report.html are both written from."""

    results: list[EvalResult]
    relevances: tuple[str, ...]
    ours: str
    verdict: str
    sections: list[tuple[str, str]]
    head_df: pd.DataFrame
    plots: dict[str, Path | None]


def _write_markdown(path: Path, report: _Report) -> None:
    """report.md: the full report, every metric of every task, and the plots linked."""
    md = [f"# Evaluation report: {report.ours}", "", report.verdict, ""]
    md += [f"## {title}\n\n{text}\n" for title, text in report.sections]
    if len(report.head_df):
        md += [
            "## Headline: ours relative to each model (paired bootstrap)",
            "",
            _markdown(report.head_df, "task"),
            "",
        ]
    for rel in report.relevances:
        md += [
            f"## Recall@10 per task — relevance: {rel} boards",
            "",
            _markdown(metrics_table(report.results, rel)),
            "",
        ]
    md += ["## Every metric per task", ""]
    for task in TASKS:
        for rel in task_relevances(task, tuple(report.relevances)):
            table = task_table(report.results, task, rel)
            if len(table):
                md += [f"### {TASKS[task]} ({rel})", "", _markdown(table), ""]
    skipped = [
        f"- {r.name}, {TASKS[task]}: {why}"
        for r in report.results
        for task, why in r.skipped.items()
    ]
    if skipped:
        md += ["Not applicable (n/a in the tables):", "", *skipped, ""]
    md += ["## Plots", ""] + [
        f"### {t}\n\n![{t}]({p.name})\n" for t, p in report.plots.items() if p is not None
    ]
    atomic_write_text(path, "\n".join(md))


def _write_html(path: Path, report: _Report) -> None:
    """report.html: the shorter, browsable version (headline and Recall@10 tables, plots)."""
    body = [
        f"<h1>Evaluation report: {html.escape(report.ours)}</h1>",
        f"<p>{html.escape(report.verdict.replace('**', ''))}</p>",
    ]
    body += [
        f"<h2>{html.escape(t)}</h2><p>{html.escape(x.replace('**', ''))}</p>"
        for t, x in report.sections
    ]
    if len(report.head_df):
        body += ["<h2>Headline: ours relative to each model</h2>", report.head_df.to_html()]
    for rel in report.relevances:
        body += [
            f"<h2>Recall@10 per task — {rel} boards</h2>",
            metrics_table(report.results, rel).to_html(),
        ]
    body += ["<h2>Plots</h2>"] + [
        f"<h3>{html.escape(t)}</h3><img src='{p.name}' style='max-width:100%'>"
        for t, p in report.plots.items()
        if p is not None
    ]
    style = "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
    atomic_write_text(
        path,
        f"<!doctype html><html><head><meta charset='utf-8'><title>pinclip report</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n",
    )


def write_report(
    results: list[EvalResult],
    data: EvalData,
    out_dir: str | Path,
    *,
    ours: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Path:
    """Write report.md, report.html, results/*.json and the PNGs into `out_dir`; returns report.md."""
    out = Path(out_dir)
    (out / "results").mkdir(parents=True, exist_ok=True)
    ours = ours or results[0].name
    relevances = data.relevances
    main_rel = data.headline_relevance
    for r in results:
        r.save(out / "results" / f"{_slug(r.name)}.json")
    best = best_baseline(results, ours, relevance=main_rel)
    plots = _write_plots(results, data, out, ours, best, seed)
    head = headline(results, ours, main_rel, n_resamples=n_resamples, seed=seed)
    head_df = _headline_frame(head)
    verdict = _verdict(results, head, ours, best, main_rel)
    sections = _sections(data, n_resamples, seed)
    report = _Report(results, relevances, ours, verdict, sections, head_df, plots)
    _write_markdown(out / "report.md", report)
    _write_html(out / "report.html", report)
    return out / "report.md"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "model"
