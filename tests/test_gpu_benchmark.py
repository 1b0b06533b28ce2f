"""benchmarks/gpu.py end to end on the CPU (``--device cpu --tiny``): every field of its JSON,
one model's failure recorded without stopping the others, the budget guard, and "no CUDA"."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
MODEL_FIELDS = {"epoch_s", "epoch_start_s", "step_s_per_epoch", "wait_s_per_epoch", "loop_overhead_s_per_epoch", "validation_s",
                "refresh_s", "step_ms", "batches_timed", "warmup_epoch_s", "kernel_share", "profiled_steps",
                "peak_cuda_gb", "params_m", "fit_s", "over_lightgcn"}


def _script():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path, *args) -> dict:
    out = tmp_path / "gpu.json"
    assert _script().main([*args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_tiny_cpu_run_has_every_field(tmp_path):
    models = ["lightgcn", "slifmr", "kgat", "kgin", "kgcl", "freedom"]
    res = _run(tmp_path, "--device", "cpu", "--tiny", "--models", ",".join([*models, "nosuchmodel"]))
    assert res["status"] == "ok" and res["device"] == "cpu"
    assert res["feature_knn_build_s"] > 0 and res["batches_per_epoch"] >= 1
    for name in models:
        r = res["models"][name]
        assert set(r) == MODEL_FIELDS, (name, set(r) ^ MODEL_FIELDS)
        assert r["kernel_share"] is None and r["peak_cuda_gb"] is None  # CUDA-only figures
        assert r["profiled_steps"] >= 1 and r["batches_timed"] >= 1
        parts = (r["step_s_per_epoch"] + r["wait_s_per_epoch"] + r["loop_overhead_s_per_epoch"] + r["validation_s"]
                 + (r["refresh_s"] or 0.0) + r["epoch_start_s"])
        assert r["step_s_per_epoch"] > 0 and r["validation_s"] > 0
        assert r["epoch_s"] == pytest.approx(parts, rel=1e-3, abs=1e-4)
    # only SLIF-MR refreshes its self-loop graph; its time is also the top-level figure
    assert res["models"]["slifmr"]["refresh_s"] > 0 and res["self_loop_refresh_s"] == res["models"]["slifmr"]["refresh_s"]
    assert all(res["models"][m]["refresh_s"] is None for m in models if m != "slifmr")
    assert res["models"]["lightgcn"]["over_lightgcn"] == 1.0
    assert "error" in res["models"]["nosuchmodel"]  # recorded; the models after it still ran
    assert math.isfinite(res["wall_s"])


def test_budget_guard_skips_models(tmp_path):
    res = _run(tmp_path, "--device", "cpu", "--tiny", "--models", "lightgcn", "--budget-s", "0")
    assert "skipped" in res["models"]["lightgcn"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_no_cuda_says_so_and_exits_0(tmp_path, capsys):
    res = _run(tmp_path)  # the default device is cuda
    assert res["status"] == "no CUDA"
    assert json.loads(capsys.readouterr().out)["status"] == "no CUDA"
