"""ATen operator calls per training step of every model (torch.profiler on the CPU): a budget that
does not depend on the device, so CPU tests can hold it (issue 13). On a GPU each ATen call is
at least one kernel launch or host round trip, so a step that makes few calls, and whose count
does not grow with the number of relations, is one the GPU can keep busy.

    python benchmarks/op_count.py                          # every model, 10 and 80 relations
    python benchmarks/op_count.py --models slifmr,kgat --relations 10,80

A step is what the model's training step computes: ``loss(batch)`` and its backward (KGAT: its
CF loss and its KG (TransR) loss, each with its backward, as its manual-optimisation step does),
after one warm-up step that builds the graph caches; the optimiser update and Lightning's own
bookkeeping are not counted. Every ``aten::`` event counts, nested ones included. SLIF-MR is
counted with its self-loop graph injected (the ``sim`` relation, the G block of A), as every
epoch after the first trains.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models_speed import model_config  # noqa: E402

from slifmr.config import register_resolvers  # noqa: E402
from slifmr.data.graph_store import GraphStore  # noqa: E402
from slifmr.data.pipeline import build_rec_dataset  # noqa: E402
from slifmr.data.sampling import BPRBatches  # noqa: E402
from slifmr.data.synthetic import SyntheticConfig, generate  # noqa: E402

ALL_MODELS = ("mf", "lightgcn", "ngcf", "bm3", "freedom", "kgat", "kgin", "kgcl", "slifmr")
KG_MODELS = ("slifmr", "kgat", "kgin", "kgcl")
SYNC = "aten::_local_scalar_dense"  # a tensor read on the host (.item(), int(t), bool(t), .tolist()): a sync on a GPU


def synthetic_store(n_relations: int, n_users: int = 3000, n_items: int = 1500, seed: int = 0):
    """(dataset, graph store, meta) of a fixed-size synthetic set with ``n_relations`` KG relations."""
    cfg = SyntheticConfig(n_users=n_users, n_items=n_items, n_interactions=20 * n_users, n_attributes=n_items // 2,
                          n_relations=n_relations, feature_dims={"visual": 64, "text": 32}, seed=seed)
    ds = build_rec_dataset(generate(cfg), kcore=0, split="random", ratios=(0.8, 0.1, 0.1), seed=seed)
    store = GraphStore(ds, seed=seed)
    meta = {"n_users": ds.n_users, "n_items": ds.n_items, "n_entities": ds.n_entities,
            "n_relations": ds.n_relations, "features": {k: int(v.shape[1]) for k, v in ds.features.items()},
            "n_kg_relations": store.n_kg_relations}
    return ds, store, meta


def build_model(name: str, store: GraphStore, meta: dict):
    from hydra.utils import instantiate

    torch.manual_seed(0)
    model = instantiate(model_config(name), meta=meta, _convert_="all")
    model.attach(store)
    model.train()
    return model


def train_step(model, batch: dict) -> None:
    """The model's gradient computation of one training step (see the module docstring)."""
    model.zero_grad(set_to_none=True)
    model.loss(batch)["loss"].backward()
    if hasattr(model, "kg_loss") and hasattr(model, "kg_batch"):
        model.kg_loss(*model.kg_batch(0))["loss"].backward()


def inject_self_loop(model, store: GraphStore) -> None:
    """Give SLIF-MR's store a self-loop graph, as its refresh does after each epoch."""
    from slifmr.graphs.knn import knn_adjacency

    store.set_item_graph(knn_adjacency(model.item_representations(), 10))


def count_ops(model, batch: dict) -> dict[str, int]:
    """{"aten": ATen events of one step (nested included), "syncs": host reads of a tensor's value
    (each a device synchronisation on a GPU), "top": the most frequent events}."""
    train_step(model, batch)  # warm-up: graph caches
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, batch)
    names = [e.name for e in prof.events() if e.name.startswith("aten::")]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])
    return {"aten": len(names), "syncs": counts.get(SYNC, 0), "top": top}


def measure(models: list[str], relations: list[int], batch_size: int = 1024) -> dict:
    out: dict = {}
    for r in relations:
        ds, store, meta = synthetic_store(r)
        batch = {k: torch.as_tensor(v) for k, v in BPRBatches(ds.train, ds.n_items, batch_size, seed=0)[0].items()}
        for name in models:
            model = build_model(name, store, meta)
            if name == "slifmr":
                inject_self_loop(model, store)
            out.setdefault(name, {})[r] = count_ops(model, batch)
            store.set_item_graph(None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument("--relations", default="10,80")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    register_resolvers()
    torch.set_num_threads(args.threads)
    res = measure(args.models.split(","), [int(v) for v in args.relations.split(",")])
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
