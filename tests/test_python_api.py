"""The whole pipeline as a notebook would run it: only names from the top-level package."""

from __future__ import annotations

import httpx
import pytest
import torch
from PIL import Image

import pinclip


def test_step_names_are_callable_even_after_their_subpackage_is_imported():
    import pinclip.evaluate.tasks  # noqa: F401  (the import system sets pinclip.evaluate = module)
    import pinclip.serve.embed  # noqa: F401
    import pinclip.train.config  # noqa: F401

    for step in ("train", "evaluate", "serve"):
        assert callable(getattr(pinclip, step)), step
    with pytest.raises(pinclip.PinclipError, match="unknown catalog builder 'nope'.*synthetic"):
        pinclip.build_catalog("nope", "/tmp/x")
    with pytest.raises(pinclip.PinclipError, match="overrides go with a YAML path"):
        pinclip.train(pinclip.load_config(None, []), "max_steps=1")


@pytest.mark.slow
def test_notebook_pipeline(tmp_path):
    catalog = pinclip.build_catalog(
        "synthetic", tmp_path / "syn", pins=240, seed=0, size=32, progress=False
    )
    report = pinclip.check_catalog(catalog)
    assert report.ok and report.good["pins.parquet"] == 240

    run = pinclip.train(
        None,
        f"data.catalog={catalog}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.build_if_missing=null",
        f"run_dir={tmp_path / 'run'}",
        "model.preset=tiny",
        "batch_size=16",
        "max_steps=4",
        "val_every=4",
        "ckpt_every=4",
        "tensorboard=false",
        "threads=1",
    )
    assert run.steps == 4
    best = run.run_dir / "best"

    result = pinclip.evaluate(run.run_dir, bootstrap=20)
    assert result.results, "no task was scored"
    report_md, results = pinclip.compare(
        [str(run.run_dir), "random"], split_from=run.run_dir, out=tmp_path / "report", bootstrap=20
    )
    assert report_md.is_file() and len(results) == 2

    emb = pinclip.embed_catalog(best, catalog, tmp_path / "emb")
    _, info = pinclip.build_index(tmp_path / "emb", tmp_path / "index", catalog_dir=catalog)
    assert (emb / "manifest.json").is_file() and info["count"] == 240  # parts + manifest
    exported = pinclip.export(best, tmp_path / "onnx", catalog=catalog, samples=4)
    assert min(exported.parity.values()) >= 0.99

    model = pinclip.PinCLIP.from_pretrained(best)
    image = Image.open(next((catalog / "images").rglob("*.png")))
    by_image = model.encode_image([image, image.copy()])
    by_text = model.encode_text(["a red pin", "a blue pin", "green"])
    pins = model.encode_pin(image, "a red pin")
    assert by_image.shape == (2, model.config.embed_dim) and by_text.shape[0] == 3
    assert torch.allclose(by_image.norm(dim=-1), torch.ones(2), atol=1e-4)
    assert torch.allclose(by_image[0], by_image[1]) and pins.shape == (1, model.config.embed_dim)
    assert model.training, "encode_* must restore training mode"

    with pinclip.serve(tmp_path / "index", best, port=0, block=False) as server:
        found = httpx.get(f"{server.url}/v1/search", params={"q": "pin", "k": 3}).json()
    assert len(found["results"]) == 3
