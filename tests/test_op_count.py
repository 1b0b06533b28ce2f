"""Issue 13's device-independent budget: ATen calls per training step (torch.profiler, CPU) of
SLIF-MR and the KG models do not grow with the number of relations, SLIF-MR stays within 2,000,
and no step reads a tensor's value on the host (a synchronisation on a GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from slifmr.config import register_resolvers

register_resolvers()


def _op_count():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "op_count.py"
    spec = importlib.util.spec_from_file_location("op_count", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kg_steps_are_flat_in_relations_and_within_budget():
    oc = _op_count()
    res = oc.measure(list(oc.KG_MODELS), [10, 80])
    for name, by_r in res.items():
        few, many = by_r[10]["aten"], by_r[80]["aten"]
        # was 8,126 -> 47,166 for SLIF-MR (a loop over relations); a few events of slack for data-dependent
        # branches (KGCL's dropout of an empty set), far below one event per relation
        assert many <= few + 0.01 * few, (name, few, many)
        assert by_r[10]["syncs"] == by_r[80]["syncs"] == 0, (name, by_r)
    assert max(res["slifmr"][r]["aten"] for r in (10, 80)) <= 2000, res["slifmr"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_slifmr_step_makes_no_host_device_transfer_on_cuda():
    from torch.profiler import ProfilerActivity, profile

    oc = _op_count()
    ds, store, meta = oc.synthetic_store(10)
    model = oc.build_model("slifmr", store, meta).cuda()
    oc.inject_self_loop(model, store)
    from slifmr.data.sampling import BPRBatches

    batch = {k: torch.as_tensor(v).cuda() for k, v in BPRBatches(ds.train, ds.n_items, 1024, seed=0)[0].items()}
    oc.train_step(model, batch)  # warm-up: graphs built and moved
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        oc.train_step(model, batch)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    assert not [n for n in names if "HtoD" in n or "DtoH" in n], "host-device copy inside a step"
    assert oc.SYNC not in names
