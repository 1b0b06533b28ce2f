"""Every study in sweeps/ composes for every job, and a dry run lists exactly its grid.

The dry runs go through the real entry point (`python -m slifmr.train -m +sweep=<name>
dry_run=true`, in-process with Hydra's basic launcher), so a misspelt key, a missing config or
a wrong grid fails here, not hours into a cluster run. Hydra composes each job in about 0.2 s,
so the per-study test pins `seed=1` (every distinct setting is still composed, the count is the
product of the other axes) and one study runs its full grid, seeds included.
"""

from __future__ import annotations

import math
import re
import sys
from importlib import resources
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from slifmr import sweeps

# Job counts of the paper's studies (docs/studies.md): a change here is a change of the study.
EXPECTED = {
    "table2": 96, "table3": 18, "table4": 15, "fig5": 12,
    "fig6_layers": 15, "fig6_beta": 21, "fig6_gamma": 15, "fig6_topn": 15,
    "fig7_interaction": 60, "fig7_kg": 60, "fig7_modality": 60, "side_info": 162,
}
MODEL_DIR = resources.files("slifmr.conf").joinpath("model")


def _present(models: list[str]) -> list[str]:
    """Models whose config exists (baselines still being written are left out, not failed)."""
    return [m for m in models if MODEL_DIR.joinpath(f"{m}.yaml").is_file()]


def _dry_run(monkeypatch, capsys, tmp_path: Path, overrides: list[str]) -> list[str]:
    """Run `slifmr.train -m ... dry_run=true` in this process; the `[dry-run]` lines it printed."""
    from slifmr.train import main

    GlobalHydra.instance().clear()
    argv = ["slifmr.train", "-m", *overrides, "dry_run=true", f"paths.log_dir={tmp_path}",
            "hydra.output_subdir=null"]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("[dry-run]")]


def test_every_study_is_listed():
    assert set(sweeps.sweep_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dry_run_lists_the_grid(monkeypatch, capsys, tmp_path, name):
    grid = sweeps.grid(name)
    assert sweeps.job_count(name) == EXPECTED[name] == math.prod(len(v) for v in grid.values())
    overrides = [f"+sweep={name}", "seed=1"]
    expected = EXPECTED[name] // len(grid["seed"])
    if "model" in grid:
        present = _present(grid["model"])
        if len(present) < len(grid["model"]):  # only while other baselines are being written
            overrides.append("model=" + ",".join(present))
            expected = expected // len(grid["model"]) * len(present)
    lines = _dry_run(monkeypatch, capsys, tmp_path, overrides)
    assert len(lines) == expected
    # one directory per job, named by its overrides, under sweeps/<name>/<dataset>/
    dirs = [line.rsplit(" | ", 1)[1] for line in lines]
    assert len(set(dirs)) == expected
    pattern = re.compile(re.escape(str(tmp_path / "sweeps" / name)) + r"/[\w.-]+/[^/]*seed=[123][^/]*")
    assert all(pattern.fullmatch(d) for d in dirs), dirs[:3]
    assert all(f"sweep={name} " in line for line in lines)
    for key, values in grid.items():  # every value of every axis reaches some job
        if key == "seed":
            values = ["1"]
        if key == "model" and len(_present(values)) < len(values):
            values = _present(values)
        for v in values:
            assert any(f"{key}={v}" in line for line in lines), f"{key}={v} missing"


def test_sweep_values_reach_the_job_config(tmp_path):
    """The ablation group and the swept keys land where the model and callbacks read them."""
    from hydra_compose import make_cfg

    cfg = make_cfg(tmp_path, ["+sweep=table3", "ablation=wo_kg_mm"])
    assert cfg.sweep_name == "table3" and not cfg.model.use_kg and not cfg.model.use_mm
    assert cfg.model._target_.endswith("SLIFMR")
    cfg = make_cfg(tmp_path, ["+sweep=table3", "ablation=wo_sge"])
    assert cfg.model.self_loop.enabled is False and cfg.model.use_kg
    cfg = make_cfg(tmp_path, ["+sweep=table3", "ablation=wo_cl"])
    assert cfg.model.consistency.enabled is False and cfg.model.self_loop.enabled is True
    cfg = make_cfg(tmp_path, ["+sweep=fig6_topn", "model.self_loop.top_n=25"])
    assert cfg.model.self_loop.top_n == 25
    cfg = make_cfg(tmp_path, ["+sweep=fig6_beta", "model.consistency.beta=0.3"])
    assert cfg.model.consistency.beta == 0.3
    cfg = make_cfg(tmp_path, ["+sweep=table4", "model.self_loop.interval=5"])
    assert cfg.model.self_loop.interval == 5
    # side_info: an arm picks the model and, for SLIF-MR, the ablation; the dataset is the synthetic family
    cfg = make_cfg(tmp_path, ["+sweep=side_info", "+arm=slifmr_wo_sge", "dataset.per_user=5", "dataset.side=noise"])
    assert cfg.model._target_.endswith("SLIFMR") and cfg.model.self_loop.enabled is False and cfg.model.use_kg
    assert cfg.dataset.name == "synth-u5-noise" and cfg.dataset.n_users == 600
    cfg = make_cfg(tmp_path, ["+sweep=side_info", "+arm=kgin"])
    assert cfg.model._target_.endswith("KGIN") and cfg.dataset.name == "synth-u10-informative"


def test_command_line_narrows_an_axis(monkeypatch, capsys, tmp_path):
    """`dataset=...`/`seed=...` on the command line replace that axis of the study."""
    lines = _dry_run(monkeypatch, capsys, tmp_path, ["+sweep=table3", "seed=7", "dataset=ml-100k-kg-tiny"])
    assert len(lines) == 6
    assert all("seed=7" in line and "dataset=ml-100k-kg-tiny" in line for line in lines)
    assert all("/sweeps/table3/ml-100k-kg-tiny/ablation=" in line for line in lines)


def test_full_grid_with_seeds(monkeypatch, capsys, tmp_path):
    """One study unnarrowed: 6 variants x 3 seeds, each (variant, seed) exactly once."""
    lines = _dry_run(monkeypatch, capsys, tmp_path, ["+sweep=table3"])
    assert len(lines) == EXPECTED["table3"] == 18
    jobs = {re.search(r"ablation=(\w+),seed=(\d)$", line).groups() for line in lines}
    assert len(jobs) == 18


def test_paper_preset_is_the_paper_switch_for_switch(tmp_path):
    """model=slifmr_paper: SPEC's reading of the paper, whatever model=slifmr's defaults are."""
    from hydra_compose import make_cfg

    paper = make_cfg(tmp_path, ["model=slifmr_paper"]).model
    ours = make_cfg(tmp_path, ["model=slifmr"]).model
    assert paper._target_ == ours._target_ and set(paper) == set(ours)  # the same constructor, every key
    assert paper.readout == "residual" and paper.prune_ratio == 0.0 and paper.fusion == "ailf"
    assert paper.consistency.beta == 0.1 and paper.consistency.gamma == 1e-5
    assert paper.consistency.exclude_positive and paper.consistency.enabled
    sl = paper.self_loop
    assert (sl.enabled, sl.interval, sl.top_n, sl.mode, sl.a_block) == (True, 1, 10, "replace", "cosine")
    # ablations and one-key overrides reach the preset as they reach model=slifmr
    cfg = make_cfg(tmp_path, ["model=slifmr_paper", "ablation=wo_sge", "model.consistency.beta=0.3"])
    assert cfg.model.self_loop.enabled is False and cfg.model.consistency.beta == 0.3
    assert cfg.model.readout == "residual"


def test_an_override_holding_a_path_names_one_directory(monkeypatch, capsys, tmp_path):
    """`tuned.path=outputs/tune` in a job's overrides used to nest its directory one level per
    slash (``...tuned.path=outputs/`` + ``tune,tuned=dir``); the slash is escaped instead."""
    root = tmp_path / "tune"
    (root / "ml-100k-kg" / "mf").mkdir(parents=True)
    (root / "ml-100k-kg" / "mf" / "best.yaml").write_text("model:\n  reg_weight: 0.001\n")
    lines = _dry_run(monkeypatch, capsys, tmp_path, ["+sweep=table2", "model=mf", "dataset=ml-100k-kg", "seed=1,2",
                                                     "tuned=dir", f"tuned.path={root}"])
    dirs = [Path(line.rsplit(" | ", 1)[1]) for line in lines]
    assert len(dirs) == 2
    for d in dirs:
        assert d.parent == tmp_path / "sweeps" / "table2" / "ml-100k-kg", d
        assert f"tuned.path={str(root).replace('/', '%2F')}" in d.name and "tuned=dir" in d.name


def test_skip_completed_names_the_same_job_directories(monkeypatch, capsys, tmp_path):
    """Re-running a killed study with skip_completed=true must reach the directories of the first
    run, where the finished jobs' records are: the switch is not part of a job's name."""
    grid = ["+sweep=table2", "model=mf,lightgcn", "dataset=ml-100k-kg", "seed=1,2"]
    plain = [line.rsplit(" | ", 1)[1] for line in _dry_run(monkeypatch, capsys, tmp_path, grid)]
    again = [line.rsplit(" | ", 1)[1] for line in _dry_run(monkeypatch, capsys, tmp_path, [*grid, "skip_completed=true"])]
    assert len(plain) == 4 and again == plain
