"""Every registered backbone family through the whole pipeline, as timm tests every model:
two training steps on stored features of the frozen backbone, resume, two steps tuning its
last block/layer, save -> from_pretrained offline (the foundation's files gone), embed a
catalog, and the ONNX export (int8 where it is faster) with its parity check."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch

from pinclip.model import PinCLIP

from .foundations import BUILDERS, EMBED

TWO_TOWERS = {"hf-clip", "hf-siglip", "hf-siglip2", "open_clip", "pinclip"}


def _overrides(tiny_catalog, tmp_path, family: str, spec: str, run: str) -> list[str]:
    out = [
        f"data.catalog={tiny_catalog}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.build_if_missing=null",
        f"run_dir={tmp_path / run}",
        "model.preset=tiny",
        f"model.overrides.backbone={spec}",
        "model.overrides.freeze_stem=true",
        "batch_size=16",
        "max_steps=2",
        "ckpt_every=1",
        "val_every=2",
        "tensorboard=false",
        "optim.warmup_steps=1",
        "optim.tuned_lr=1e-3",
        "threads=1",
    ]
    if family in TWO_TOWERS:
        out.append("model.overrides.freeze_text_encoder=true")
    if family in TWO_TOWERS - {"pinclip"}:
        out += [
            f"model.overrides.embed_dim={EMBED}",
            f"model.overrides.matryoshka_dims=[8,{EMBED}]",
        ]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", list(BUILDERS))
def test_backbone_family_through_the_pipeline(family, tiny_catalog, tmp_path, monkeypatch):
    from pinclip.serve import PinService, build_index, catalog_samples, export_onnx
    from pinclip.serve.embed import embed_catalog, read_embeddings
    from pinclip.serve.embedder import OnnxEmbedder, TorchEmbedder
    from pinclip.train import load_config, train
    from pinclip.train.recipe import build_model

    spec = BUILDERS[family](tmp_path / "foundation")
    # frozen backbone: its features stored once, two steps, then resumed for a third
    frozen = _overrides(tiny_catalog, tmp_path, family, spec, "frozen")
    assert train(load_config(None, frozen)).steps == 2
    assert any((tmp_path / "cache" / "features").glob("images-*/seg-*"))
    result = train(load_config(None, [*frozen, "max_steps=3"]), resume=True)
    assert result.steps == 3

    # tuned: the last block (and text layer) train, the backbone below them does not
    tuned = _overrides(tiny_catalog, tmp_path, family, spec, "tuned")
    tuned.append("model.overrides.image.tune_last_blocks=1")
    if family in TWO_TOWERS:
        tuned.append("model.overrides.text.tune_last_layers=1")
    train(load_config(None, tuned))
    tuned_cfg = load_config(None, tuned)
    init = build_model(tuned_cfg.model, seed=tuned_cfg.seed, loss_kind=tuned_cfg.loss.kind)
    final = PinCLIP.from_pretrained(tmp_path / "tuned" / "final")
    towers = ("image", "text") if family in TWO_TOWERS else ("image",)
    for tower in towers:
        before, after = getattr(init, tower), getattr(final, tower)
        pairs = zip(before.tuned_part().parameters(), after.tuned_part().parameters(), strict=True)
        assert any(not torch.equal(a, b) for a, b in pairs), tower
        frozen_parts = zip(
            before.frozen_part().state_dict().values(),
            after.frozen_part().state_dict().values(),
            strict=True,
        )
        assert all(torch.equal(a, b) for a, b in frozen_parts), tower

    # save -> from_pretrained offline: the foundation's own files are not needed any more
    model_dir = tmp_path / "frozen" / "final"
    samples = catalog_samples(tiny_catalog, 8)
    before = TorchEmbedder.load(model_dir).embed_pins(
        np.stack([TorchEmbedder.load(model_dir).preprocess(i) for i, _ in samples]),
        [t for _, t in samples],
    )
    shutil.rmtree(tmp_path / "foundation")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reloaded = TorchEmbedder.load(model_dir)
    pixels = np.stack([reloaded.preprocess(i) for i, _ in samples]).astype(np.float32)
    after = reloaded.embed_pins(pixels, [t for _, t in samples])
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-5)

    model = PinCLIP.from_pretrained(model_dir)  # encode_*: strings and PIL images in
    text = model.encode_text([t for _, t in samples])
    np.testing.assert_allclose(text.numpy(), after["text_emb"], atol=1e-4)
    image = model.encode_image([i for i, _ in samples])
    assert image.shape == (len(samples), model.config.embed_dim)

    # embed the catalog, then export (parity is checked inside; it raises below 0.99)
    out = embed_catalog(model_dir, tiny_catalog, tmp_path / "emb", backend="torch", device="cpu")
    ids, emb = read_embeddings(out)
    assert len(ids) == 240  # the tiny catalog's pins
    assert np.allclose(np.linalg.norm(emb["pin_emb"], axis=1), 1, atol=1e-3)

    # index and serve: a text query ranks the pins as their embeddings do; an added pin is
    # found by its own vector
    build_index(out, tmp_path / "index", kind="flat", catalog_dir=tiny_catalog)
    service = PinService.open(tmp_path / "index", model_dir, backend="torch", device="cpu")
    query = model.encode_text([samples[0][1]])[0].numpy()
    expected = ids[int(np.argmax(emb["pin_emb"] @ query))]
    assert service.search_text(samples[0][1], 1)[0]["pin_id"] == expected
    png = io.BytesIO()
    samples[1][0].save(png, format="PNG")
    added = service.add_pin(png.getvalue(), title="a pin added through the service")["pin_id"]
    own = service.index.vector(service.row(added))
    assert service.index.search(own[None], 1)[0][0].row == service.row(added)
    report = export_onnx(model_dir, tmp_path / "onnx", samples, int8=True)
    assert min(report.parity.values()) >= 0.99
    onnx = OnnxEmbedder(tmp_path / "onnx").embed_pins(pixels, [t for _, t in samples])
    assert float((onnx["pin_emb"] * after["pin_emb"]).sum(1).min()) >= 0.99
