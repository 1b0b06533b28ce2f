"""Search spaces: one per trainable model, every key in its model's composed config, clear errors."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from hydra_compose import make_cfg
from slifmr.tune.space import (SpaceError, as_overrides, check_keys, load_space, models_with_spaces, parse_space,
                               space_owner, space_source)


def _models() -> list[str]:
    """Every model config of conf/model, whatever models exist when the test runs."""
    d = resources.files("slifmr.conf").joinpath("model")
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml"))


def _trains(model: str) -> bool:
    """A model config with a learning rate has something to tune (Pop has none)."""
    text = resources.files("slifmr.conf").joinpath("model", f"{model}.yaml").read_text()
    return "lr" in (yaml.safe_load(text) or {})


@pytest.mark.parametrize("model", _models())
def test_every_trainable_model_declares_a_space_whose_keys_exist(tmp_path, model):
    if not _trains(model):
        assert model not in models_with_spaces() or load_space(model)
        pytest.skip(f"{model} has no learning rate: nothing to tune")
    space = load_space(model)  # a missing conf/tune/<model>.yaml fails here, naming the file
    assert "model.lr" in space and space["model.lr"].choices == (1e-4, 1e-3, 1e-2)  # the paper's shared grid
    # a sampled point is a valid set of overrides of the train config (it composes) ...
    first = {k: (p.choices[0] if p.choices else p.low) for k, p in space.items()}
    cfg = make_cfg(tmp_path, [f"model={model}", *as_overrides(first)])
    check_keys(space, cfg, space_source(space_owner(model)))  # ... and each key exists (no "+key" can add one silently)


def test_every_space_belongs_to_a_model():
    assert set(models_with_spaces()) <= set(_models())


def test_a_preset_searches_its_base_models_space():
    assert space_owner("slifmr_paper") == "slifmr" and space_owner("pop") is None
    assert load_space("slifmr_paper") == load_space("slifmr")


def test_a_missing_space_names_the_file():
    with pytest.raises(SpaceError, match=r"conf/tune/nosuchmodel\.yaml does not exist"):
        load_space("nosuchmodel")


def test_a_moved_key_is_an_error(tmp_path):
    cfg = make_cfg(tmp_path, ["model=lightgcn"])
    space = parse_space({"model.lr": [0.1], "model.n_layerz": [1, 2]}, "conf/tune/x.yaml")
    with pytest.raises(SpaceError, match="model.n_layerz not in the composed config"):
        check_keys(space, cfg, "conf/tune/x.yaml")


@pytest.mark.parametrize("spec, message", [
    ([], "empty list"),
    ({"low": 5, "high": 1}, "low < high"),
    ({"low": 0.0, "high": 1.0, "log": True}, "log range needs low > 0"),
    ({"low": 1, "high": 5, "size": 2}, "range is"),
    ([1, 1], "repeated"),
    ([[64, 64]], "write a list value as a string"),
    ("0.1", "expected a list"),
])
def test_malformed_entries_name_the_file_and_key(spec, message):
    with pytest.raises(SpaceError, match=message) as e:
        parse_space({"model.lr": spec}, "conf/tune/x.yaml")
    assert "conf/tune/x.yaml: 'model.lr'" in str(e.value)


def test_ranges_and_overrides():
    space = parse_space({"model.n_layers": {"low": 1, "high": 5}, "model.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                         "model.layer_sizes": ["[64,64]"]}, "x")
    assert space["model.n_layers"].kind == "int" and space["model.lr"].kind == "float"
    assert as_overrides({"model.lr": 1e-05, "model.layer_sizes": "[64,64]", "model.use_kg": False}) == [
        "model.lr=1e-05", "model.layer_sizes=[64,64]", "model.use_kg=false"]
