"""The result record a training run writes: every field, per-user values that average to the
logged test metrics, W&B group/name in a sweep, and atomic writes."""

from __future__ import annotations

import json
import os
import re
from importlib.metadata import version

import numpy as np
import pytest
import torch

from slifmr.report import PER_USER_FILE, RECORD_FILE, load_per_user, load_records
from slifmr.records import atomic_write_json, write_record
from slifmr.train import train
from hydra_compose import make_cfg

FIELDS = {
    "schema", "created", "status", "run_dir", "model", "model_class", "dataset", "seed", "sweep_name",
    "overrides", "config", "monitor", "best_epoch", "epochs", "val", "test", "val_history", "time_s",
    "memory", "package", "git", "env", "per_user_test",
}
PHASES = {"data_preparation", "epoch_start", "dataloading", "train_step", "self_loop_refresh", "validation", "fit", "test",
          "fit_overhead", "total"}


def test_run_writes_a_complete_record(tmp_path, shared_data):
    overrides = ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "model=slifmr",
                 "trainer.max_epochs=1", "callbacks.progress_bar=null", "seed=7"]
    metrics = train(make_cfg(tmp_path, overrides))
    run = tmp_path / "run"
    [rec] = load_records([run])
    assert FIELDS <= set(rec), FIELDS - set(rec)
    assert rec["schema"] == "slifmr.record/1" and rec["status"] == "completed"
    assert rec["model"] == "slifmr" and rec["dataset"] == "ml-100k-kg-tiny" and rec["seed"] == 7
    assert rec["overrides"] == overrides
    assert rec["config"]["model"]["_target_"] == "slifmr.models.slifmr.SLIFMR"
    assert rec["config"]["paths"]["output_dir"] == str(run) and "hydra" not in rec["config"]
    assert rec["epochs"] == 1 and rec["best_epoch"] == 0 and rec["monitor"] == "val/recall@20"
    assert rec["val"]["recall@20"] == pytest.approx(metrics["val/recall@20"], abs=1e-9)
    assert len(rec["val_history"]) == 1
    for k, v in metrics.items():
        if k.startswith("test/"):
            assert rec["test"][k[5:]] == pytest.approx(v, abs=1e-12)
    t = rec["time_s"]
    assert set(t) == PHASES and all(v is not None and v >= 0 for v in t.values())
    assert t["train_step"] > 0 and t["validation"] > 0 and t["test"] > 0 and t["self_loop_refresh"] > 0
    assert t["epoch_start"] > 0  # SLIF-MR prunes its graphs at each epoch's start
    assert t["fit"] <= t["total"] and t["data_preparation"] + t["fit"] + t["test"] <= t["total"] + 1e-3
    assert rec["memory"]["peak_rss_mb"] > 50 and rec["memory"]["cuda_peak_mb"] is None
    assert rec["package"] == {"name": "slifmr", "version": version("slifmr")}
    assert rec["git"] is None or re.fullmatch(r"[0-9a-f]{40}", rec["git"]["revision"])
    assert rec["env"]["world_size"] == 1
    # what decides a CPU run's last bits besides the code: the processor, the ISA torch's kernels
    # dispatch to, the thread count the run trained with
    assert rec["env"]["threads"] == torch.get_num_threads() >= 1 and rec["env"]["cpu"]
    assert rec["env"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()

    # per-user test values: one row per evaluated user, averaging to the logged test metrics
    pu = load_per_user(rec)
    assert load_per_user(rec) is pu  # read once per record, however many comparisons ask
    assert rec["per_user_test"]["file"] == PER_USER_FILE and (run / PER_USER_FILE).exists()
    assert len(pu["user"]) == rec["per_user_test"]["n_users"] > 100
    assert np.all(np.diff(pu["user"]) > 0)
    for k in (10, 20, 50):
        for m in ("recall", "ndcg", "precision"):
            key = f"{m}@{k}"
            assert float(np.mean(pu[key])) == pytest.approx(metrics[f"test/{key}"], abs=1e-6)
    json.loads((run / RECORD_FILE).read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))


def test_failed_write_leaves_no_partial_record(tmp_path, monkeypatch):
    run = tmp_path / "run"
    good = {"schema": "slifmr.record/1", "model": "mf", "test": {"recall@20": 0.5}}
    write_record(run, good)
    before = (run / RECORD_FILE).read_bytes()

    # a value that cannot be stored: fails before anything is written
    with pytest.raises(TypeError):
        write_record(run, {**good, "test": {"recall@20": object()}})
    # a failure after the bytes were written to the temporary file (disk full, killed, ...)
    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_record(run, {**good, "test": {"recall@20": 0.9}})
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(tmp_path / "fresh" / RECORD_FILE, good)
    monkeypatch.undo()

    assert (run / RECORD_FILE).read_bytes() == before  # the old record, whole
    assert sorted(p.name for p in run.iterdir()) == [RECORD_FILE]  # no temporary or partial files
    assert list((tmp_path / "fresh").iterdir()) == []
    assert load_records([run])[0]["test"]["recall@20"] == 0.5


def test_wandb_logger_in_a_multirun_gets_group_and_name(tmp_path, monkeypatch):
    """A sweep's jobs share a W&B group (sweep_name, else the multirun dir's name) and each is
    named by its overrides; offline, no network."""
    pytest.importorskip("wandb")
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import open_dict

    monkeypatch.setenv("WANDB_MODE", "offline")

    def compose_job(extra: list[str]):
        cfg = make_cfg(tmp_path, ["logger=wandb", "model=mf", "seed=3", *extra])
        with open_dict(cfg):
            cfg.hydra.mode = "MULTIRUN"
            cfg.hydra.sweep.dir = str(tmp_path / "multiruns" / "2025-01-01_12-00-00")
        return cfg

    try:
        cfg = compose_job([])
        HydraConfig.instance().set_config(cfg)
        lg = instantiate(cfg.logger.wandb)
        assert lg._wandb_init["group"] == "2025-01-01_12-00-00"  # the multirun dir's name
        assert cfg.hydra.job.override_dirname == "logger=wandb,model=mf,seed=3"
        assert lg._wandb_init["name"] == "model=mf,seed=3"  # what the run computes: no logger (or path) keys
        assert lg.experiment.group == "2025-01-01_12-00-00" and lg.experiment.name == "model=mf,seed=3"

        cfg = compose_job(["sweep_name=fig6_layers"])
        HydraConfig.instance().set_config(cfg)
        lg = instantiate(cfg.logger.wandb)
        assert lg._wandb_init["group"] == "fig6_layers"
    finally:
        import wandb

        wandb.finish()
        HydraConfig.instance().cfg = None

    # outside a sweep (or outside Hydra): no group, W&B picks the name
    lg = instantiate(make_cfg(tmp_path, ["logger=wandb"]).logger.wandb)
    assert lg._wandb_init["group"] is None and lg._wandb_init["name"] is None


def test_every_model_config_has_a_display_name_in_reports():
    """Each model of conf/model/ (presets like slifmr_paper under their model) gets its paper name
    and a place in the Table II order, not its config key."""
    from pathlib import Path

    from slifmr.report.aggregate import MODEL_NAMES

    conf = Path(__file__).resolve().parents[2] / "conf" / "model"
    models = {p.stem.removesuffix("_paper") for p in conf.glob("*.yaml")}
    assert len(models) >= 16
    assert models <= MODEL_NAMES.keys(), sorted(models - MODEL_NAMES.keys())


def test_record_names_the_checkout_the_run_started_from(monkeypatch):
    """A commit during a long run must not relabel it: the record keeps the start's revision and
    says the end's as ``at_end`` when they differ."""
    from slifmr.callbacks import run_record
    from slifmr.callbacks.run_record import RunRecordCallback

    states = iter([{"revision": "a" * 40, "dirty": True}, {"revision": "b" * 40, "dirty": False}])
    monkeypatch.setattr(run_record, "git_revision", lambda: next(states))
    cb = RunRecordCallback(monitor="val/recall@20")
    cb.bind(cfg=None, started=0.0)
    assert cb._git_provenance() == {"revision": "a" * 40, "dirty": True, "at_end": {"revision": "b" * 40, "dirty": False}}
    same = {"revision": "c" * 40, "dirty": False}
    monkeypatch.setattr(run_record, "git_revision", lambda: dict(same))
    cb.bind(cfg=None, started=0.0)
    assert cb._git_provenance() == same


def test_a_models_epoch_start_work_is_its_own_phase(tmp_path, shared_data, monkeypatch):
    """Work in a model's ``on_train_epoch_start`` (DiffMM and DiffKG regenerate their graphs there)
    is ``epoch_start`` time, not ``dataloading`` (where it landed before)."""
    import time as _time

    from slifmr.models.mf import MF

    monkeypatch.setattr(MF, "on_train_epoch_start", lambda self: _time.sleep(0.3), raising=False)
    overrides = ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "model=mf", "trainer.max_epochs=2",
                 "callbacks.progress_bar=null", "callbacks.early_stopping.warmup_epochs=0"]
    train(make_cfg(tmp_path, overrides))
    [rec] = load_records([tmp_path / "run"])
    t = rec["time_s"]
    assert t["epoch_start"] >= 0.6 and t["dataloading"] < 0.3, t
    assert t["fit"] + 1e-3 >= t["epoch_start"] + t["dataloading"] + t["train_step"] + t["validation"]
