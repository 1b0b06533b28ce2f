"""tuned=<set>: each job's model at its own tuned point; missing or stale points are errors."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml
from omegaconf import OmegaConf

from hydra_compose import make_cfg
from slifmr.tune.points import TunedError, apply_tuned, parse_value


def _write_point(root, dataset: str, model: str, overrides: dict, valid: float = 0.3) -> None:
    d = root / dataset / model
    d.mkdir(parents=True)
    point = {"model": model, "dataset": dataset, "monitor": "val/recall@20", "valid": valid, "default_valid": 0.2,
             "trials": 12, "completed": 9, "pruned": 3, "overrides": overrides}
    (d / "best.yaml").write_text(yaml.safe_dump(point))


def _cfg(tmp_path, root, *extra):
    return make_cfg(tmp_path / "run", ["dataset=ml-100k-kg-tiny", "tuned=dir", f"tuned.path={root}", *extra])


def test_the_jobs_point_is_applied_and_recorded(tmp_path):
    root = tmp_path / "tune"
    _write_point(root, "ml-100k-kg-tiny", "lightgcn", {"model.n_layers": 1, "model.lr": 0.001})
    _write_point(root, "ml-100k-kg-tiny", "ngcf", {"model.layer_sizes": "[64,64]"})
    cfg = apply_tuned(_cfg(tmp_path, root, "model=lightgcn"))
    assert cfg.model.n_layers == 1 and cfg.model.lr == 0.001
    assert cfg.tuned.status == "tuned" and cfg.tuned.trials == 12 and cfg.tuned.valid == 0.3
    assert apply_tuned(cfg) is cfg and cfg.model.n_layers == 1  # applying twice changes nothing
    ngcf = apply_tuned(_cfg(tmp_path, root, "model=ngcf"))
    assert list(ngcf.model.layer_sizes) == [64, 64]  # read as the trial's override read it


def test_the_command_line_wins_over_the_point(tmp_path):
    root = tmp_path / "tune"
    _write_point(root, "ml-100k-kg-tiny", "lightgcn", {"model.n_layers": 1, "model.lr": 0.001})
    cfg = apply_tuned(_cfg(tmp_path, root, "model=lightgcn", "model.n_layers=4"))
    assert cfg.model.n_layers == 4 and cfg.model.lr == 0.001
    assert list(cfg.tuned.kept_from_command_line) == ["model.n_layers"]


def test_missing_point_is_an_error_but_pop_runs_at_its_defaults(tmp_path):
    root = tmp_path / "tune"
    _write_point(root, "ml-100k-kg-tiny", "lightgcn", {"model.n_layers": 1})
    with pytest.raises(TunedError, match="no point for model 'mf' on dataset 'ml-100k-kg-tiny'"):
        apply_tuned(_cfg(tmp_path, root, "model=mf"))
    pop = apply_tuned(_cfg(tmp_path, root, "model=pop"))
    assert pop.tuned.status == "default" and "no search space" in pop.tuned.reason


def test_a_point_with_a_moved_key_is_an_error(tmp_path):
    root = tmp_path / "tune"
    _write_point(root, "ml-100k-kg-tiny", "lightgcn", {"model.n_layerz": 1})
    with pytest.raises(TunedError, match="key 'model.n_layerz' is not in the composed config"):
        apply_tuned(_cfg(tmp_path, root, "model=lightgcn"))


def _committed_points():
    d = resources.files("slifmr.conf").joinpath("tuned")
    for f in sorted(p for p in d.iterdir() if p.name.endswith(".yaml") and p.name != "dir.yaml"):
        data = yaml.safe_load(f.read_text())
        for dataset, models in data["points"].items():
            for model in models:
                yield f.name[:-5], dataset, model


@pytest.mark.parametrize("name, dataset, model", list(_committed_points()))
def test_committed_points_fit_their_model(tmp_path, name, dataset, model):
    cfg = make_cfg(tmp_path, [f"tuned={name}", f"model={model}", f"dataset={dataset}"])
    cfg = apply_tuned(cfg)
    assert cfg.tuned.status == "tuned" and cfg.tuned.trials >= 1 and cfg.tuned.valid is not None
    for key, value in cfg.tuned.overrides.items():
        applied = OmegaConf.select(cfg, key)
        applied = OmegaConf.to_container(applied) if OmegaConf.is_config(applied) else applied
        assert applied == parse_value(key, value)


def test_a_tuned_run_records_its_point(tmp_path, shared_data):
    from slifmr.train import train

    root = tmp_path / "tune"
    _write_point(root, "ml-100k-kg-tiny", "mf", {"model.reg_weight": 0.001})
    cfg = _cfg(tmp_path, root, "model=mf", f"paths.data_dir={shared_data}", "trainer.max_epochs=1",
               "callbacks.progress_bar=null")
    train(cfg)
    rec = json.loads((tmp_path / "run" / "run" / "record.json").read_text())
    assert rec["config"]["model"]["reg_weight"] == 0.001
    assert rec["config"]["tuned"]["status"] == "tuned" and rec["config"]["tuned"]["valid"] == 0.3


def test_collect_gathers_points_into_a_set(tmp_path):
    from slifmr.tune.collect import collect, main

    root = tmp_path / "tune"
    _write_point(root, "ml-100k-kg", "lightgcn", {"model.n_layers": 2})
    _write_point(root, "ml-100k-kg", "mf", {"model.lr": 0.01})
    tuned = collect(root, "demo")
    assert tuned["name"] == "demo" and sorted(tuned["points"]["ml-100k-kg"]) == ["lightgcn", "mf"]
    out = tmp_path / "demo.yaml"
    assert main([str(root), "--name", "demo", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == tuned
    _write_point(root, "ml-100k-kg", "ngcf", {"model.lr": 0.01})
    (root / "ml-100k-kg" / "ngcf" / "best.yaml").write_text(yaml.safe_dump({"model": "mf", "overrides": {"a": 1}}))
    with pytest.raises(TunedError, match="says model=mf"):
        collect(root, "demo")
