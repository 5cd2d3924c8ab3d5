"""`pinclip compare zero-shot:SPEC`: a foundation's own embeddings as a baseline, named in
the report when it is the strongest training-free one."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.evaluate.baselines import PinCLIPEmbedder
from pinclip.evaluate.baselines.zero_shot import ZeroShotEmbedder
from pinclip.evaluate.data import EvalData
from pinclip.model.config import TextConfig

ZS_LENGTH = TextConfig().max_length


def test_zero_shot_of_a_pinclip_foundation_is_its_own_image_and_text_embedding(tiny_run):
    data = EvalData.from_run(tiny_run)
    zero = ZeroShotEmbedder(f"pinclip:{tiny_run}").embed_pins(data)
    own = PinCLIPEmbedder(tiny_run).embed_pins(data)
    for part in ("image", "text"):
        cos = (getattr(zero, part) * getattr(own, part)).sum(1)
        assert float(cos.min()) > 0.9999, part
    mean = torch.nn.functional.normalize(own.image + own.text, dim=-1)
    assert float((zero.pin * mean).sum(1).min()) > 0.9999


def test_compare_names_the_strongest_training_free_baseline(tiny_run, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            f"ours={tiny_run}",
            f"fm=zero-shot:pinclip:{tiny_run}",
            "random",
            "--split-from",
            str(tiny_run),
            "--out",
            str(out),
            "--bootstrap",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert "| fm |" in md
    line = next(x for x in md.splitlines() if x.startswith("Strongest training-free baseline"))
    assert "**fm**" in line or "**random**" in line


def test_zero_shot_of_a_vlm_is_its_unit_pooled_states(tiny_run, tiny_vlms):
    """`zero-shot:hf-vlm:DIR`: the bare VLM's image and text passes, pin = their mean."""
    from pinclip.model.backbones import load_foundation

    spec = f"hf-vlm:{tiny_vlms['idefics3']}"
    data = EvalData.from_run(tiny_run)
    zero = ZeroShotEmbedder(spec).embed_pins(data)
    n = len(data.texts)
    assert zero.image.shape == zero.text.shape == zero.pin.shape and len(zero.pin) == n
    torch.testing.assert_close(zero.pin.norm(dim=1), torch.ones(n))
    from pinclip.model.text_tower import tokenize

    foundation = load_foundation(spec)
    texts = list(data.texts[:3])  # the text pass alone, batch by batch, as the baseline runs it
    direct = foundation.encode_text(tokenize(foundation.tokenizer, texts, ZS_LENGTH))
    torch.testing.assert_close(zero.text[:3], direct, atol=1e-5, rtol=1e-4)
