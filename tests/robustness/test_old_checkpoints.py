"""A SLIF-MR checkpoint written before the model owned its knobs (issue 11) loads with the values
its run used: ``prune_ratio: null`` in its hyper-parameters meant "the dataset's
``prune_ratio``", and its kNN k and self-loop settings lived outside the model. load_run,
evaluate and resume read such a checkpoint; the test ages a fresh run's files into that form."""

from __future__ import annotations

import json

import pytest
import torch

from hydra_compose import make_cfg
from slifmr.checkpoints import CheckpointError
from slifmr.evaluate import evaluate
from slifmr.train import train

RATIO = 0.3  # what the run trained with; the old layout keeps it in dataset.prune_ratio only


def _old_layout(cfg: dict) -> dict:
    """Today's composed config (plain) in the layout of a run before issue 11."""
    cfg = json.loads(json.dumps(cfg))
    model, dataset = cfg["model"], cfg["dataset"]
    dataset["prune_ratio"], model["prune_ratio"] = model["prune_ratio"], None
    dataset["knn_k"] = model.pop("knn_k")
    cfg["self_loop"] = model.pop("self_loop")
    return cfg


@pytest.fixture(scope="module")
def old_run(tmp_path_factory, shared_data):
    """(run dir, train overrides, test metrics recorded): one epoch of SLIF-MR at prune_ratio 0.3,
    its best checkpoint and record aged into the old form."""
    tmp = tmp_path_factory.mktemp("old")
    overrides = ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "model=slifmr", "debug=fast",
                 f"model.prune_ratio={RATIO}", "trainer.max_epochs=1", "callbacks.progress_bar=null",
                 f"paths.cache_dir={tmp / 'cache'}"]
    train(make_cfg(tmp, overrides))
    run = tmp / "run"
    best = run / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["prune_ratio"] == RATIO
    hp["prune_ratio"] = None
    del hp["knn_k"], hp["self_loop"]
    ckpt["slifmr_config"] = _old_layout(ckpt["slifmr_config"])
    torch.save(ckpt, best)
    record = json.loads((run / "record.json").read_text())
    record["config"] = _old_layout(record["config"])
    (run / "record.json").write_text(json.dumps(record))
    return run, overrides, record["test"]


def _drop_stored_config(run):
    """As a checkpoint written before the config was stored in it (issue 12)."""
    best = run / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    ckpt.pop("slifmr_config")
    torch.save(ckpt, best)


def test_the_aged_checkpoint_is_what_todays_constructor_refuses(old_run):
    from slifmr.models.slifmr import SLIFMR

    run, _, _ = old_run
    hp = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]
    with pytest.raises(ValueError, match="prune_ratio must be in"):
        SLIFMR(**hp)


def test_load_run_and_evaluate_read_null_as_the_runs_dataset_ratio(old_run, tmp_path, shared_data):
    from slifmr import load_run

    run, overrides, recorded = old_run
    loaded = load_run(run)
    assert loaded.model.prune_ratio == RATIO and loaded.model.knn_k == 10
    # the run's own, from the stored config (model=slifmr's value, not the constructor's default)
    assert loaded.model.self_loop.a_block == make_cfg(tmp_path, overrides).model.self_loop.a_block
    again = loaded.evaluate("test")
    for k, v in recorded.items():
        assert again[f"test/{k}"] == pytest.approx(v, abs=1e-12), k
    data = ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", f"paths.cache_dir={tmp_path / 'cache'}"]
    metrics = evaluate(make_cfg(tmp_path / "e", data + [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}"],
                                config_name="eval"))
    for k, v in recorded.items():  # pruning is training-only: the ratio changes nothing here
        assert metrics[f"test/{k}"] == pytest.approx(v, abs=1e-6), k


def test_resume_compares_the_old_config_as_today_reads_it(old_run, tmp_path):
    from slifmr.resume import resolve_ckpt

    run, overrides, _ = old_run
    best = str(run / "checkpoints" / "best.ckpt")
    assert resolve_ckpt(make_cfg(tmp_path / "a", overrides + [f"ckpt_path={best}"])) == best
    with pytest.raises(CheckpointError, match=r"model\.prune_ratio: 0\.3 -> 0\.0"):
        resolve_ckpt(make_cfg(tmp_path / "b", overrides + [f"ckpt_path={best}", "model.prune_ratio=0.0"]))


def test_without_a_stored_config_load_run_reads_the_run_directorys(old_run):
    from slifmr import load_run

    run, _, recorded = old_run
    _drop_stored_config(run)  # last test of the module: it changes the shared run
    loaded = load_run(run)
    assert loaded.model.prune_ratio == RATIO
    assert loaded.evaluate("test")["test/recall@20"] == pytest.approx(recorded["recall@20"], abs=1e-12)
