"""An index records the model that embedded it; serving it with another model is refused."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from pinclip.cli import app
from pinclip.model import PinCLIP
from pinclip.serve import PinIndex, PinService
from pinclip.serve.embedder import model_fingerprint
from pinclip.serve.service import ModelMismatchError


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    # Same preset and dimensions as the fixture's model, other weights: only the
    # fingerprint can tell them apart (the dimension check cannot).
    model = PinCLIP.from_preset("tiny", pretrained=False, seed=1)
    return model.save_pretrained(tmp_path_factory.mktemp("other") / "model")


def test_index_records_the_model_it_was_embedded_with(index_dir, model_dir):
    recorded = PinIndex.load(index_dir).info["model"]
    assert recorded["fingerprint"] == model_fingerprint(model_dir)
    copy = shutil.copytree(model_dir, model_dir.parent / "model-copy")  # identity is content
    assert model_fingerprint(copy) == recorded["fingerprint"]


def test_serving_another_model_is_refused_unless_overridden(
    index_dir, model_dir, other_model, tmp_path
):
    with pytest.raises(ModelMismatchError, match="--allow-model-mismatch") as err:
        PinService.open(index_dir, other_model, store_dir=tmp_path / "a")
    assert str(other_model) in str(err.value) and str(model_dir) in str(err.value)
    service = PinService.open(
        index_dir, other_model, store_dir=tmp_path / "b", allow_model_mismatch=True
    )
    assert service.search_text("red", 3)
    service.store.close()


def test_cli_serve_refuses_a_mismatch_with_a_clear_error(index_dir, other_model):
    result = CliRunner().invoke(
        app, ["serve", "--index", str(index_dir), "--model", str(other_model), "--port", "1"]
    )
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "was embedded by model" in output and "--allow-model-mismatch" in output
