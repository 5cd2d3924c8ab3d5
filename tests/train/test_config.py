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
