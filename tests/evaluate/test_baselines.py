"""The baseline plug-in contract, and that the task scores respond to embedding quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinclip.evaluate.baselines import (
    BASELINES,
    BaselineContext,
    Embedder,
    PinEmbeddings,
    create_baseline,
    list_baselines,
    register_baseline,
)
from pinclip.evaluate.baselines.base import check_embeddings, normalize
from pinclip.evaluate.data import EvalData
from pinclip.evaluate.tasks import TASKS, evaluate_embedder


class BoardOracle(Embedder):
    """A pin = its curated-board membership vector: the best possible curated relevance."""

    name = "oracle"

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        member = torch.tensor(data.relevance_graph("curated").pin_board.toarray())
        # a small constant extra coordinate keeps board-less pins unit-norm and orthogonal to boards
        pin = normalize(torch.cat([member, torch.full((data.n_pins, 1), 0.1)], dim=1))
        return PinEmbeddings(pin=pin, image=None, text=None)


@pytest.fixture(scope="module")
def data(tiny_run) -> EvalData:
    return EvalData.from_run(tiny_run)


def test_builtin_baselines_are_registered():
    assert {
        "random",
        "minilm",
        "lite0",
        "minilm+lite0",
        "open_clip",
        "pinclip",
        "zero-shot",
    } <= set(list_baselines())
    with pytest.raises(ValueError, match="known: "):
        create_baseline("no-such-model")
    with pytest.raises(ValueError, match="did you mean 'minilm\\+lite0'"):
        create_baseline("minilm+lite")
    with pytest.raises(ValueError, match="needs open_clip:RUN_DIR"):
        create_baseline("open_clip:")


#: a spec per registered baseline, from the session's tiny runs (a baseline without one fails)
EXAMPLES = {
    "random": lambda runs: "random",
    "minilm": lambda runs: "minilm",
    "lite0": lambda runs: "lite0",
    "minilm+lite0": lambda runs: "minilm+lite0",
    "pinclip": lambda runs: f"pinclip:{runs('tiny_run')}",
    "open_clip": lambda runs: f"open_clip:{runs('open_clip_run')[1]}",
    "zero-shot": lambda runs: f"zero-shot:pinclip:{runs('tiny_run')}",
}


@pytest.fixture(scope="module")
def context() -> BaselineContext:
    """One comparison's context: the shared encoders load once for every case below."""
    return BaselineContext()


@pytest.mark.parametrize("name", BASELINES.names())
def test_every_registered_baseline_embeds_the_tiny_catalog(name, data, context, request):
    assert name in EXAMPLES, f"add an example spec for baseline {name!r} to EXAMPLES"
    model = create_baseline(EXAMPLES[name](request.getfixturevalue), context)
    emb = check_embeddings(model.embed_pins(data), data.n_pins, name)
    titles = model.embed_texts(data.board_titles[:3])
    assert titles is None or titles.shape == (3, emb.pin.shape[1])
    assert emb.image is not None or emb.text is not None


def test_compare_help_lists_every_registered_spec_form():
    from typer.testing import CliRunner

    from pinclip.cli import app
    from pinclip.evaluate.baselines import baseline_help

    result = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert baseline_help() in " ".join(result.output.split())
    for entry in BASELINES:
        assert entry.name in baseline_help()


def test_a_comparison_resolves_every_spec_through_the_registry_and_shares_encoders(tiny_run):
    from pinclip.evaluate.baselines.pretrained import ConcatEmbedder, MiniLMEmbedder
    from pinclip.evaluate.compare import build_embedders

    ours, path, text, both = build_embedders(
        [f"ours={tiny_run}", str(tiny_run), "minilm", "minilm+lite0"]
    )
    assert ours.name == "ours" and path.name == str(tiny_run)
    assert isinstance(text, MiniLMEmbedder) and isinstance(both, ConcatEmbedder)
    assert both.text_model is text  # loaded once, shared
    assert text.stored is not None and both.image_model.stored is text.stored  # ours's store


def test_contract_rejects_wrong_shapes_and_unnormalised_vectors():
    good = normalize(torch.randn(5, 4))
    assert check_embeddings(PinEmbeddings(good, None, good), 5, "x").pin is good
    with pytest.raises(ValueError, match="shape"):
        check_embeddings(PinEmbeddings(good, good[:3], None), 5, "x")
    with pytest.raises(ValueError, match="normalised"):
        check_embeddings(PinEmbeddings(good * 2, None, None), 5, "x")
    with pytest.raises(ValueError, match="NaN"):
        check_embeddings(PinEmbeddings(good.clone().fill_(float("nan")), None, None), 5, "x")


def test_random_floor_is_seeded_and_scores_every_task(data):
    random = create_baseline("random", dim=16)
    a, b = random.embed_pins(data), random.embed_pins(data)
    assert torch.equal(a.pin, b.pin) and not torch.equal(a.pin, a.image)
    result = evaluate_embedder(random, data, n_resamples=200)
    # every task but the image-only cold pins, which this catalog does not have
    assert {task for task, _ in result.results} == set(TASKS) - {"related_cold_textless"}
    assert result.skipped == {"related_cold_textless": "no such pins in this split"}
    res = result.get("related_cold", "curated")
    mean, low, high = res.summary["recall@10"]
    assert low <= mean <= high
    assert res.n_queries + res.n_without_relevant == len(data.split.cold)
    assert result.to_json()["tasks"]["related_cold"]["curated"]["metrics"]["recall@10"]["ci95"] == [
        low,
        high,
    ]


def test_a_plugged_in_model_missing_modalities_skips_those_tasks_and_beats_random(data):
    register_baseline("oracle")(BoardOracle)
    oracle = evaluate_embedder(create_baseline("oracle"), data, n_resamples=200)
    assert set(oracle.skipped) == {
        "related_cold_image",
        "related_cold_textless",
        "text_to_image",
        "image_to_text",
        "board_to_pins",
        "boards_for_cold",
        "new_board_to_pins",
    }
    random = evaluate_embedder(create_baseline("random", dim=16), data, n_resamples=200)
    for task in ("related_cold", "related_warm"):
        assert oracle.get(task, "curated").summary["recall@10"][0] > 0.9
        assert (
            oracle.get(task, "curated").summary["recall@10"][0]
            > random.get(task, "curated").summary["recall@10"][2]
        )
    # relevance by all boards is a different (larger) relevant set than curated boards
    assert not np.array_equal(
        oracle.get("related_cold", "all").per_query["recall@10"],
        oracle.get("related_cold", "curated").per_query["recall@10"],
    )


def test_concatenation_keeps_each_half_unit_norm(data):
    from pinclip.evaluate.baselines.pretrained import ConcatEmbedder

    class Fixed(Embedder):
        def __init__(self, dim: int, seed: int) -> None:
            self.dim, self.seed = dim, seed
            self.model = type("M", (), {"num_features": dim})()

        def embed_pins(self, data):
            x = normalize(
                torch.randn(
                    data.n_pins, self.dim, generator=torch.Generator().manual_seed(self.seed)
                )
            )
            return PinEmbeddings(x, x, x)

        def embed_texts(self, texts):
            return normalize(
                torch.randn(len(texts), self.dim, generator=torch.Generator().manual_seed(9))
            )

    concat = ConcatEmbedder(image=Fixed(6, 1), text=Fixed(4, 2))
    emb = check_embeddings(concat.embed_pins(data), data.n_pins, "concat")
    assert emb.pin.shape[1] == 10
    assert torch.allclose(
        emb.pin[:, :6].norm(dim=1), torch.full((data.n_pins,), 0.5**0.5), atol=1e-5
    )
    assert torch.all(emb.image[:, 6:] == 0) and torch.all(emb.text[:, :6] == 0)
    assert concat.embed_texts(["a", "b"]).shape == (2, 10)


def test_pinclip_run_behind_the_interface(tiny_run, data):
    from pinclip.evaluate.baselines import PinCLIPEmbedder

    model = PinCLIPEmbedder(tiny_run, name="tiny")
    emb = check_embeddings(model.embed_pins(data), data.n_pins, "tiny")
    assert emb.image is not None and emb.text is not None
    assert model.embed_texts(data.board_titles[:3]).shape == (3, emb.pin.shape[1])
    assert model.trained_on() == str(tiny_run)


class SameSpace(Embedder):
    """Text and image are the same vector (a perfectly aligned pair of towers)."""

    name = "same-space"

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        pin = normalize(torch.randn(data.n_pins, 8, generator=torch.Generator().manual_seed(0)))
        return PinEmbeddings(pin=pin, image=pin, text=pin)


def test_text_to_image_finds_the_own_image_and_scores_board_mates_separately(data):
    result = evaluate_embedder(SameSpace(), data, n_resamples=100)
    own = result.get("text_to_image", "self")
    assert own.summary["recall@1"][0] == 1.0  # its own image is the exact match
    mates = result.get("text_to_image", "curated")
    assert mates is not None and mates.summary["recall@10"][0] < 1.0
    assert not np.isin(mates.queries[:, None] == mates.retrieved, True).any()  # own one excluded


def test_image_only_cold_pins_are_their_own_task(data):
    import copy

    textless = copy.copy(data)
    textless.catalog = copy.copy(data.catalog)
    pins = data.catalog.pins.copy()
    cold = data.split.cold
    blank = np.zeros(data.n_pins, dtype=bool)
    blank[cold[::2]] = True  # half the cold pins lose their text
    pins.loc[blank, ["title", "description"]] = None
    textless.catalog.pins = pins
    result = evaluate_embedder(create_baseline("random", dim=16), textless, n_resamples=100)
    res = result.get("related_cold_textless", "all")
    assert "related_cold_textless" not in result.skipped
    assert set(res.queries) <= set(cold[::2]) and res.n_queries + res.n_without_relevant == len(
        cold[::2]
    )


class BoardNames(Embedder):
    """A pin = its boards (all of them); a board title = that board: the ideal board ranker."""

    name = "board-names"

    def __init__(self, data: EvalData) -> None:
        self.titles = data.board_titles

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        member = torch.tensor(data.graph.pin_board.toarray(), dtype=torch.float32)
        pin = normalize(torch.cat([member, torch.full((data.n_pins, 1), 0.1)], dim=1))
        return PinEmbeddings(pin=pin, image=None, text=None)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        assert texts == self.titles
        return torch.eye(len(texts), len(texts) + 1)


def test_boards_for_a_cold_pin_ranks_its_own_boards_first(data):
    good = evaluate_embedder(BoardNames(data), data, n_resamples=100)
    res = good.get("boards_for_cold", "all")
    assert res.n_queries > 0 and res.summary["recall@10"][0] > 0.9
    random = evaluate_embedder(create_baseline("random", dim=16), data, n_resamples=100)
    assert random.get("boards_for_cold", "all").summary["recall@10"][0] < 0.5


class TitleOracle(BoardOracle):
    """BoardOracle whose board-title embedding is that board's one-hot: a perfect board tower."""

    name = "title-oracle"

    def __init__(self, data: EvalData) -> None:
        self.curated = list(np.flatnonzero(data.curated_boards))
        self.titles = data.board_titles

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), len(self.curated) + 1)
        for i, text in enumerate(texts):
            board = self.titles.index(text)
            if board in self.curated:
                out[i, self.curated.index(board)] = 1.0
            else:
                out[i, -1] = 1.0
        return out


def test_new_board_task_queries_only_held_out_boards_and_rewards_a_good_title_embedding(data):
    held = data.held_out_boards
    curated_held = np.intersect1d(held, np.flatnonzero(data.curated_boards))
    assert len(curated_held) >= 1 and len(held) > len(curated_held)
    good = evaluate_embedder(TitleOracle(data), data, n_resamples=200, tasks=["new_board_to_pins"])
    res = good.get("new_board_to_pins", "curated")
    assert sorted(res.queries.tolist()) == sorted(
        b for b in curated_held.tolist() if data.graph.board_size[b] > 0
    )
    assert res.summary["recall@10"][0] > 0.9
    every = good.get("new_board_to_pins", "all")
    assert set(every.queries.tolist()) <= set(held.tolist())
    random = evaluate_embedder(
        create_baseline("random", dim=16), data, n_resamples=200, tasks=["new_board_to_pins"]
    )
    assert random.get("new_board_to_pins", "curated").summary["recall@10"][0] < 0.5


@pytest.fixture(scope="module")
def stored(data, tmp_path_factory):
    """The small preset's frozen MiniLM / Lite0 features of the eval catalog in a store, and the
    split's data pointing at it (what a demo run leaves behind)."""
    from dataclasses import replace

    from pinclip.evaluate.baselines.pretrained import StoredFeatures
    from pinclip.model import PinCLIP
    from pinclip.model.inputs import PinInputs

    cache = tmp_path_factory.mktemp("store")
    cfg = data.config
    data = replace(data, config=replace(cfg, cache_dir=str(cache)))
    model = PinCLIP.from_preset("small").eval()
    PinInputs.prepare(model, data, cache_dir=cache, device=torch.device("cpu"), console=None)
    return StoredFeatures(model), data


def _counting(embedder, method: str) -> list[int]:
    """Wrap `embedder.method` to record how many items each call computes from the raw inputs."""
    calls, direct = [], getattr(embedder, method)

    def wrapped(items, pins=None):
        if method == "embed_texts":
            calls.append(len(items))
            return direct(items)
        calls.append(items.n_pins if pins is None else len(pins))
        return direct(items, pins)

    setattr(embedder, method, wrapped)
    return calls


def test_baselines_read_the_feature_store_and_equal_the_encoders_run_directly(stored):
    from pinclip.evaluate.baselines.pretrained import Lite0Embedder, MiniLMEmbedder

    features, data = stored
    image_size = features.model.config.image.image_size
    for make, part in (
        (lambda s: MiniLMEmbedder(stored=s), "text"),
        (lambda s: Lite0Embedder(image_size, crop_pct=1.0, stored=s), "image"),
    ):
        direct = getattr(make(None).embed_pins(data), part)
        reused = make(features)
        calls = _counting(reused, "embed_texts" if part == "text" else "embed_images")
        from_store = getattr(reused.embed_pins(data), part)
        assert calls and sum(calls) <= 8  # only the check items ran through the encoder
        cos = (direct * from_store).sum(1)
        assert cos.min() > 0.999  # the same embeddings, to fp16 storage precision
        assert torch.allclose(direct, from_store, atol=5e-3)
    # another resolution than the store's: not read, not checked (every pin computed once)
    other = Lite0Embedder(image_size + 32, crop_pct=1.0)
    calls = _counting(other, "embed_images")
    assert features.image_features(data, other) is None
    assert calls == []


def test_a_store_holding_other_features_is_not_used(stored):
    from pinclip.evaluate.baselines.pretrained import Lite0Embedder, MiniLMEmbedder

    features, data = stored
    text = MiniLMEmbedder(stored=features)
    with torch.no_grad():  # not the weights the store was built with any more
        text.model.embeddings.word_embeddings.weight.mul_(-1.0)
    calls = _counting(text, "embed_texts")
    text.embed_pins(data)
    assert sum(calls) >= len(data.texts)  # every text computed directly
    image = Lite0Embedder(224, stored=features)  # other preprocessing than the store's 128 px
    calls = _counting(image, "embed_images")
    image.embed_pins(data)
    assert calls[-1] == data.n_pins
