"""The Hub, offline: push_to_hub's folder is the repo; a repo id resolves from the local cache.

Nothing here reaches the network: the upload is intercepted at `HfApi` (the boundary), the
uploaded folder is laid out in a temporary HF_HOME exactly as huggingface_hub caches a
download (blobs/, snapshots/<commit>/, refs/main; checked by its own `scan_cache_dir`),
and `from_pretrained("org/name")` runs with HF_HUB_OFFLINE=1 in a fresh process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import pinclip
from pinclip.model import PinCLIP, create_model, preset_config
from pinclip.model.hub import HubError, model_card

SRC = Path(__file__).resolve().parents[1] / "src"
REPO = "pinclip-tests/tiny-synthetic"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run_dir, catalog, report_dir): a 2-step tiny run and its comparison report."""
    root = tmp_path_factory.mktemp("hub")
    catalog = pinclip.build_catalog(
        "synthetic", root / "syn", pins=240, seed=0, size=32, progress=False
    )
    run = pinclip.train(
        None,
        f"data.catalog={catalog}",
        f"data.cache_dir={root / 'cache'}",
        "data.build_if_missing=null",
        f"run_dir={root / 'run'}",
        "model.preset=tiny",
        "batch_size=16",
        "max_steps=2",
        "val_every=2",
        "ckpt_every=2",
        "tensorboard=false",
        "threads=1",
    )
    report, _ = pinclip.compare(
        [str(run.run_dir), "random"], split_from=run.run_dir, out=root / "report", bootstrap=20
    )
    return run.run_dir, catalog, report.parent


def _sections(card: str) -> list[str]:
    return [line[3:] for line in card.splitlines() if line.startswith("## ")]


def test_card_has_every_section_from_the_run(trained):
    run, catalog, report = trained
    model = PinCLIP.from_pretrained(run / "best")
    card = model_card(model.config, repo_id=REPO, run_dir=run, report=report)
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "pinclip" and meta["pipeline_tag"] == "feature-extraction"
    assert _sections(body) == [
        "Usage",
        "Model",
        "Training data",
        "Objective",
        "Evaluation",
        "Licences",
        "Limitations",
    ]
    assert f'PinCLIP.from_pretrained("{REPO}")' in body
    stats = json.loads((catalog / "catalog.json").read_text())["counts"]
    assert f"{stats['pins']:,} pins" in body
    assert "neighbor alignment over the pin–board graph (λ = " in body
    headline = next(x for x in (report / "report.md").read_text().splitlines() if "Headline:" in x)
    assert headline in body and "| related pins, cold (image+text) | random |" in body
    assert "fusion layers: trained from random initialisation" in body


def test_card_states_the_data_and_tower_licences(trained, tmp_path):
    """An emoji-catalog run with the small preset: OpenMoji CC BY-SA 4.0, Apache-2.0 towers."""
    run, _, _ = trained
    emoji = pinclip.build_catalog("emoji", tmp_path / "emoji", limit=12, user_boards=20)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["catalog"] = str(emoji)
    emoji_run = tmp_path / "run"
    emoji_run.mkdir()
    (emoji_run / "config.yaml").write_text(yaml.safe_dump(config))
    card = model_card(preset_config("small"), run_dir=emoji_run)
    licences = card.split("## Licences", 1)[1].split("## ", 1)[0]
    assert "CC BY-SA 4.0 (OpenMoji)" in licences
    assert "image stem weights: EfficientNet-Lite0 trained on ImageNet-1k" in licences
    assert "text encoder weights: sentence-transformers/all-MiniLM-L6-v2" in licences
    assert licences.count("Apache-2.0") >= 3  # both towers and the code
    assert "OpenMoji" in card.split("## Training data", 1)[1]
    assert "No evaluation report was given" in card


def _cache_repo(hf_home: Path, repo_id: str, folder: Path, commit: str) -> None:
    """Lay `folder` out as huggingface_hub caches a downloaded snapshot of `repo_id`."""
    repo_dir = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo_dir / "snapshots" / commit / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)


LOAD = """
import json, sys
from pinclip import PinCLIP
from pinclip.model.hub import HubError
model = PinCLIP.from_pretrained(sys.argv[1])
print(json.dumps(model.encode_text(["a red pin", "blue"]).tolist()))
try:
    PinCLIP.from_pretrained("pinclip-tests/not-cached")
except HubError as err:
    print("HubError:", err)
"""


def test_push_then_load_by_repo_id_from_the_offline_cache(trained, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, scan_cache_dir

    run, _, report = trained
    model = PinCLIP.from_pretrained(run / "best")
    calls: dict[str, object] = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = repo_id
        shutil.copytree(folder_path, tmp_path / "uploaded")
        return "https://hub.invalid/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model.push_to_hub(REPO, run_dir=run, report=report, private=True)
    assert calls["create_repo"][0] == REPO and calls["create_repo"][1]["exist_ok"]
    assert calls["upload_folder"] == REPO
    uploaded = tmp_path / "uploaded"
    assert sorted(p.name for p in uploaded.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]  # the save_pretrained folder is the repo layout, plus its card
    assert "## Evaluation" in (uploaded / "README.md").read_text()

    hf_home = tmp_path / "hf"
    commit = "0123456789abcdef0123456789abcdef01234567"
    _cache_repo(hf_home, REPO, uploaded, commit)
    scanned = {r.repo_id: r for r in scan_cache_dir(hf_home / "hub").repos}
    (revision,) = scanned[REPO].revisions
    assert {f.file_name for f in revision.files} >= {"model.safetensors", "README.md"}
    assert revision.commit_hash == commit

    env = {
        "PYTHONPATH": str(SRC),
        "PATH": "/usr/bin:/bin",
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", LOAD, REPO], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    loaded = torch.tensor(json.loads(lines[0]))
    assert torch.allclose(loaded, model.encode_text(["a red pin", "blue"]), atol=1e-6)
    assert lines[1].startswith("HubError: pinclip-tests/not-cached is not in the local Hub cache")


def test_a_local_folder_still_wins_and_a_bad_id_is_a_clear_error(trained, tmp_path):
    run, _, _ = trained
    assert PinCLIP.from_pretrained(str(run / "best")).config.name == "tiny"
    with pytest.raises(FileNotFoundError, match="save_pretrained or a Hub repo id"):
        PinCLIP.from_pretrained(tmp_path)
    assert issubclass(HubError, pinclip.PinclipError)


def test_create_model_warns_that_fusion_layers_are_random():
    with pytest.warns(UserWarning, match=r"random: .*fusion layers, embedding heads"):
        create_model("tiny", pretrained=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model("tiny", pretrained=False)  # nothing promised, nothing to warn about
    assert "fusion layers" in create_model.__doc__ and "pinclip models" in create_model.__doc__


def test_cli_push_to_hub_sends_the_run_best_model_and_its_card(trained, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from typer.testing import CliRunner

    from pinclip.cli import app

    run, _, report = trained
    sent = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        sent["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        sent["card"] = (Path(folder_path) / "README.md").read_text()
        return "https://hub.invalid/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = CliRunner().invoke(app, ["push-to-hub", str(run), REPO, "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert sent["files"] == ["README.md", "config.json", "model.safetensors"]
    assert "Headline:" in sent["card"] and "## Objective" in sent["card"]
