"""What a run shows: few warnings, the validation score on the bar, a closing block that says
where everything is (also in train.log); the traps of the console flags and of dry runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
from hydra.core.global_hydra import GlobalHydra

from hydra_compose import make_cfg
from slifmr.runner import closing_block, log_interval, train_batches_per_epoch

WARNING_LINE = re.compile(r"(\.py:\d+: )|Warning\b|warn\(")


def test_a_short_default_run_is_quiet_and_ends_with_where_everything_is(tmp_path):
    """The default model on the embedded dataset, 2 short epochs, as a user runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = tmp_path / "run"
    # early stopping's warm-up (10 epochs, issue 15) would keep its verbose lines out of a 2-epoch run
    cmd = [sys.executable, "-m", "slifmr.train", "trainer.max_epochs=2", "+trainer.limit_train_batches=3",
           "callbacks.early_stopping.warmup_epochs=0",
           f"hydra.run.dir={run}", f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # tqdm redraws with \r: every redraw is its own "line" on a terminal
    lines = [seg.strip() for seg in re.split(r"[\r\n]", proc.stdout + proc.stderr) if seg.strip()]
    warnings_ = [ln for ln in lines if WARNING_LINE.search(ln)]
    assert len(warnings_) <= 3, warnings_
    assert max(Counter(warnings_).values(), default=0) <= 1, warnings_  # none repeats
    assert any("val/recall@20=" in ln for ln in lines)  # on the progress bar
    assert any(ln.startswith("Metric val/recall@20 improved") for ln in lines)  # EarlyStopping(verbose=True)
    log = (run / "train.log").read_text()
    for text in (proc.stdout + proc.stderr, log):
        assert "run finished in" in text
        assert f"run dir     {run}" in text
        assert re.search(r"best epoch  [01] of 2 \(val/recall@20 0\.\d{4}\)", text)
        assert re.search(r"recall\s+0\.\d{4}\s+0\.\d{4}\s+0\.\d{4}", text)
        assert f"checkpoint  {run / 'checkpoints' / 'best.ckpt'}" in text and f"record      {run / 'record.json'}" in text
    assert re.search(r"epoch 1  val/recall@20 0\.\d{4}  \(best 0\.\d{4} at epoch [01]\)", log)  # per epoch
    record = json.loads((run / "record.json").read_text())
    assert f"best epoch  {record['best_epoch']} of 2" in log
    assert f"{record['test']['recall@20']:.4f}" in log


def test_progress_bar_flag_turns_the_bar_off(tmp_path, shared_data):
    """`trainer.enable_progress_bar=false` used to clash with the configured bar callback."""
    from pytorch_lightning.callbacks import ProgressBar

    from slifmr.runner import instantiate_callbacks
    from slifmr.train import train

    cfg = make_cfg(tmp_path, ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "model=mf",
                              "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    assert any(isinstance(c, ProgressBar) for c in instantiate_callbacks(cfg.callbacks))
    assert not any(isinstance(c, ProgressBar) for c in instantiate_callbacks(cfg.callbacks, progress_bar=False))
    assert 0.0 <= train(cfg)["test/recall@20"] <= 1.0


def test_log_interval_never_exceeds_the_epoch():
    assert train_batches_per_epoch(10_000, 4096) == 3
    assert train_batches_per_epoch(8192, 4096) == 2
    assert train_batches_per_epoch(10_000, 4096, 2) == 2 and train_batches_per_epoch(10_000, 4096, 50) == 3
    assert train_batches_per_epoch(100_000, 1000, 0.25) == 25
    assert log_interval(50, 3) == 3 and log_interval(10, 30) == 10 and log_interval(10, 0) == 1


def test_closing_block_reads_the_record(tmp_path):
    rec = tmp_path / "record.json"
    rec.write_text(json.dumps({"best_epoch": 7, "epochs": 12, "monitor": "val/recall@20",
                               "val": {"recall@20": 0.31234}}))
    metrics = {"test/recall@20": 0.3, "test/recall@10": 0.2, "test/ndcg@20": 0.15, "val/recall@20": 0.9}
    text = closing_block(tmp_path, metrics, 125.0, rec, str(tmp_path / "best.ckpt"), label="job 3: seed=2")
    assert text.startswith("run finished (job 3: seed=2) in 2m 05s")
    assert "best epoch  7 of 12 (val/recall@20 0.3123)" in text
    assert re.search(r"recall\s+0\.2000\s+0\.3000", text) and re.search(r"ndcg\s+0\.1500", text)
    assert "0.9000" not in text  # validation values of the last epoch are not test metrics


def _train_main(monkeypatch, argv):
    from slifmr.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["slifmr.train", *argv])
    try:
        main()
    finally:
        GlobalHydra.instance().clear()


def test_a_dry_run_leaves_the_output_tree_as_it_was(monkeypatch, capsys, tmp_path):
    """A study's job directories are the real jobs' ones: the dry run must not write into them,
    nor leave the ones it created."""
    sweep = tmp_path / "sweeps" / "table2"
    real_job = sweep / "ml-100k-kg-tiny" / "model=mf,seed=1"
    (real_job / ".hydra").mkdir(parents=True)
    (real_job / ".hydra" / "config.yaml").write_text("real: run\n")
    (sweep / "multirun.yaml").write_text("the real sweep\n")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    _train_main(monkeypatch, ["-m", "+sweep=table2", "model=mf,lightgcn", "dataset=ml-100k-kg-tiny", "seed=1",
                              "dry_run=true", f"paths.log_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert out.count("[dry-run] job") == 2 and "no job directory was kept" in out
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (real_job / ".hydra" / "config.yaml").read_text() == "real: run\n"
    assert (sweep / "multirun.yaml").read_text() == "the real sweep\n"

    fresh = tmp_path / "fresh"
    _train_main(monkeypatch, ["-m", "model=mf,lightgcn", "dry_run=true", f"paths.log_dir={fresh}"])
    assert not fresh.exists()


def test_a_misspelt_key_gets_did_you_mean():
    from slifmr.overrides import key_hints

    hints = key_hints(["model=lightgcn", "model.n_layerz=2", "seeed=3", "trainer.max_epochs=1"])
    assert len(hints) == 2
    assert "did you mean 'model.n_layers'" in hints[0] and "n_layers" in hints[0].split("Keys of model:")[1]
    assert "did you mean 'seed'" in hints[1]
    assert "would not help" in hints[0] and "LightGCN does not take it" in hints[0]  # Hydra's "+key" hint fails next
    takes = key_hints(["trainer.limit_train_batches=2"])  # the Trainer takes it: then '+' is right
    assert takes == ["'trainer.limit_train_batches' is not in the config, but pytorch_lightning.Trainer takes it: "
                     "add it with '+trainer.limit_train_batches=...'"]
    assert key_hints(["+sweep=table2", "modle.L=2", "dataset=ml-100k-kg-tiny"]) == [
        key_hints(["modle.L=2"])[0]]
    assert "did you mean 'model.L'" in key_hints(["modle.L=2"])[0]
    assert key_hints(["model=lightgcn", "model.n_layers=2", "hydra/launcher=joblib"]) == []


def test_the_cli_prints_the_hint(monkeypatch, capsys):
    from slifmr.overrides import run_cli
    from slifmr.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["slifmr.train", "model=lightgcn", "model.n_layerz=2"])
    with pytest.raises(SystemExit) as e:
        run_cli(main, "train")
    GlobalHydra.instance().clear()
    assert e.value.code == 1
    assert "did you mean 'model.n_layers'" in capsys.readouterr().err


def test_a_missing_dataset_says_where_to_point_and_where_to_get_it(tmp_path):
    import hydra

    from slifmr.errors import DataError

    cfg = make_cfg(tmp_path, ["dataset=ml-100k-kg", f"paths.data_dir={tmp_path / 'nowhere'}"])
    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    with pytest.raises(DataError) as e:
        dm.setup()
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "nowhere" / "ml-100k-kg") in msg
    assert "paths.data_dir" in msg and "SLIFMR_DATA_DIR" in msg and "Get it: MovieLens 100K" in msg
