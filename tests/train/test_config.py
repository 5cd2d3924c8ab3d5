import re
from pathlib import Path

import pytest

from pinclip.train.config import ConfigError, TrainConfig, load_config, save_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, TrainConfig)


def test_clip_only_differs_from_default_only_in_lambda_and_run_dir():
    base = load_config(CONFIGS[0].parent / "emoji-small.yaml")
    ablation = load_config(CONFIGS[0].parent / "emoji-clip-only.yaml")
    assert ablation.loss.nbr_weight == 0 and base.loss.nbr_weight > 0
    base.loss.nbr_weight, base.run_dir = 0.0, ablation.run_dir
    assert base == ablation


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None, ["optim.lr=1e-3", "loss.nbr_weight=0", "epochs=3", "model.overrides.width=64"]
    )
    assert cfg.optim.lr == 1e-3 and cfg.loss.nbr_weight == 0.0 and cfg.epochs == 3
    assert cfg.model.overrides == {"width": 64}


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("optim.lrr=1", "optim.lr"),
        ("batchsize=8", "batch_size"),
        ("loss.nbr_wieght=0", "loss.nbr_weight"),
    ],
)
def test_unknown_override_suggests_nearest_key(override, suggestion):
    with pytest.raises(ConfigError, match=f"Did you mean '{suggestion}'"):
        load_config(None, [override])


def test_unknown_key_in_yaml_names_file_and_suggests(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  weight_decey: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim.weight_decey.*bad.yaml.*optim.weight_decay"):
        load_config(path)


def test_bad_value_and_bad_syntax_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        load_config(None, ["epochs=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["optim.lr=2e-4", "data.sampler=random_walk"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_model_overrides_are_type_checked_at_load_time():
    with pytest.raises(ConfigError, match="Did you mean 'image.depth'"):
        load_config(None, ["model.overrides.image.dpeth=3"])
    with pytest.raises(ConfigError, match="image.depth.*Integer"):
        load_config(None, ["model.overrides.image.depth=deep"])
    with pytest.raises(ConfigError, match="loss.kind.*siglip"):
        load_config(None, ["loss.kind=triplet"])


def test_random_walk_keys_have_one_name_and_old_run_configs_still_load(tmp_path):
    from pinclip.graph import RandomWalkConfig

    assert load_config(None).data.random_walk == RandomWalkConfig()
    old = tmp_path / "config.yaml"  # a run written before the rename
    old.write_text("data:\n  walk_count: 7\n  walk_restart: 0.25\n")
    walk = load_config(old).data.random_walk
    assert (walk.n_walks, walk.restart_prob, walk.top_k) == (7, 0.25, RandomWalkConfig.top_k)
    with pytest.raises(ConfigError, match="data.random_walk.restart_prob"):
        load_config(None, ["data.walk_restart=0.3"])


def _literal_fields(cls: type, prefix: str = "") -> list[tuple[str, tuple]]:
    """(dotted key, choices) of every `Literal` field of a config dataclass tree."""
    import dataclasses
    import typing

    from pinclip._typed_config import literal_choices

    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            out += _literal_fields(annotation, f"{prefix}{f.name}.")
        elif literal_choices(annotation):
            out.append((prefix + f.name, literal_choices(annotation)))
    return out


def _typos() -> list[tuple[str, str, str]]:
    """(key, a typo'd value, the choice it should suggest) for every choice of every Literal
    field of the training config and of the model config (through `model.overrides`)."""
    from pinclip.model import PinCLIPConfig

    fields = _literal_fields(TrainConfig) + _literal_fields(PinCLIPConfig, "model.overrides.")
    return [(key, c + c[-1], c) for key, choices in fields for c in choices if c is not None]


TYPOS = _typos()


def test_the_literal_fields_are_found():
    keys = {key for key, _, _ in TYPOS}
    assert {"data.batch", "data.sampler", "data.feature_dtype", "precision", "distributed"} <= keys
    assert {"loss.kind", "loss.nbr_positives", "model.overrides.vlm.pooling"} <= keys


@pytest.mark.parametrize(("key", "typo", "choice"), TYPOS, ids=[f"{k}={t}" for k, t, _ in TYPOS])
def test_a_typo_in_any_literal_field_fails_at_load_with_the_nearest_choice(key, typo, choice):
    with pytest.raises(ConfigError, match=f"did you mean '{choice}'") as err:
        load_config(None, [f"{key}={typo}", "data.catalog=/nonexistent/catalog"])
    assert key.removeprefix("model.overrides.") in str(err.value)


def test_a_typo_in_a_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batch: bords\n")
    with pytest.raises(
        ConfigError, match=r"data.batch='bords' in .*bad.yaml.*did you mean 'boards'"
    ):
        load_config(bad)


def test_configs_built_in_python_are_checked_too():
    from pinclip.graph import CatalogSplitConfig
    from pinclip.train.config import DataConfig, OptimConfig

    with pytest.raises(ConfigError, match="did you mean 'boards'"):
        DataConfig(batch="bords")
    with pytest.raises(ConfigError, match="did you mean 'int8'"):
        CatalogSplitConfig(feature_dtype="int88")
    with pytest.raises(ConfigError, match="did you mean 'cuda'"):
        TrainConfig(device="cdua")
    with pytest.raises(ConfigError, match="optim.accum_steps=0"):
        OptimConfig(accum_steps=0)
    # names that are not Literals: a registry's (builders) and a tuple's (loss terms)
    with pytest.raises(ConfigError, match="data.build_if_missing='emjoi'.*did you mean 'emoji'"):
        load_config(None, ["data.build_if_missing=emjoi"])
    with pytest.raises(ConfigError, match="loss.nbr_terms.*did you mean 'text_pin'"):
        load_config(None, ["loss.nbr_terms=[pin_pin,text_pn]"])


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("device=cuda:x", "device='cuda:x'"),
        ("batch_size=0", "batch_size=0 must be >= 1"),
        ("optim.grad_clip=0", "optim.grad_clip"),
        ("optim.min_lr_ratio=2", "optim.min_lr_ratio"),
        ("data.cold_frac=0.99", "data.cold_frac"),
        ("data.board_holdout_frac=1", "data.board_holdout_frac"),
        ("data.prefetch=0", "data.prefetch=0"),
        ("data.random_walk.top_k=0", "top_k"),
        ("model.preset=smal", "did you mean 'small'"),
    ],
)
def test_ranges_are_checked_at_load(override, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(None, [override])


def test_a_board_k_below_2_only_matters_for_board_batches():
    assert load_config(None, ["data.board_k=1"]).data.board_k == 1  # batch=pairs: unused
    with pytest.raises(ConfigError, match="data.board_k=1"):
        load_config(None, ["data.board_k=1", "data.batch=boards"])


def test_a_run_config_reads_back_as_its_split_without_the_training_package(tmp_path):
    """Evaluation's path: the split's part of a saved config.yaml, training keys ignored."""
    from pinclip.graph import CatalogSplitConfig

    cfg = load_config(None, ["data.split_seed=3", "data.batch=boards", "data.cold_frac=0.2"])
    save_config(cfg, tmp_path / "config.yaml")
    split = CatalogSplitConfig.from_run_config(tmp_path / "config.yaml", catalog="elsewhere")
    assert (split.split_seed, split.cold_frac, split.catalog) == (3, 0.2, "elsewhere")
    assert split.board_holdout_frac == cfg.data.board_holdout_frac
