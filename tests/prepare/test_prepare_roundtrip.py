"""Round trip on the shared ml-100k-kg-tiny: prepare -> the generated config -> train one epoch."""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hydra_compose import make_cfg
from prep_helpers import run

from slifmr.data.expected import DatasetMismatchWarning
from slifmr.train import train


def test_prepare_tiny_then_train_one_epoch(tmp_path, shared_data):
    res = run("kgat", shared_data / "ml-100k-kg-tiny", tmp_path / "data" / "tiny")
    assert res.config_path == tmp_path / "data" / "tiny" / "conf" / "dataset" / "tiny.yaml"
    cfg = make_cfg(tmp_path, [
        f"hydra.searchpath=[file://{res.output / 'conf'}]", "dataset=tiny", "model=mf",
        "trainer.max_epochs=1", "callbacks.progress_bar=null",
    ])
    assert cfg.dataset.path == str(res.output) and cfg.dataset.split == "given" and cfg.dataset.kcore == 0
    assert cfg.dataset.expected.n_interactions == 6017 and cfg.dataset.expected.text_coverage == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetMismatchWarning)  # the prepared copy matches its own counts
        metrics = train(cfg)
    assert 0.0 <= metrics["test/recall@20"] <= 1.0 and not math.isnan(metrics["test/recall@20"])


def test_generated_config_warns_when_the_directory_changes(tmp_path, shared_data):
    res = run("kgat", shared_data / "ml-100k-kg-tiny", tmp_path / "tiny")
    lines = (res.output / "test.txt").read_text().splitlines()
    (res.output / "test.txt").write_text("\n".join(lines[:-1]) + "\n")  # one user's test items lost
    cfg = make_cfg(tmp_path, [f"hydra.searchpath=[file://{res.output / 'conf'}]", "dataset=tiny"])
    import hydra

    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    with pytest.warns(DatasetMismatchWarning, match=r"n_interactions: expected 6017, found 60\d\d.*n_test: expected 1211"):
        dm.setup()


@pytest.mark.slow
def test_printed_command_runs(tmp_path, shared_data):
    """The exact command prepare prints, plus a fast-debug suffix, trains from a fresh process."""
    res = run("kgat", shared_data / "ml-100k-kg-tiny", tmp_path / "my tiny")  # a space in the path too
    argv = shlex.split(res.command)
    assert argv[:3] == ["python", "-m", "slifmr.train"]
    argv = [sys.executable] + argv[1:] + [
        "debug=fast", "model=mf", "callbacks.progress_bar=null", f"hydra.run.dir={tmp_path / 'run'}",
        "paths.log_dir=" + str(tmp_path / "logs"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLIFMR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the closing block ends the run with the test table (runner.closing_block): a recall row of numbers
    assert re.search(r"^  test +@10 +@20", proc.stdout, re.M), proc.stdout[-2000:]
    assert re.search(r"^    recall +\d\.\d{4} +\d\.\d{4}", proc.stdout, re.M), proc.stdout[-2000:]
    assert "DATASET MISMATCH" not in proc.stderr
    assert Path(tmp_path / "run" / ".hydra" / "config.yaml").is_file()
