"""What issue 18's deterministic gathers cost at the paper's Amazon-Book scale (synthetic).

    python benchmarks/determinism_cost.py --threads 2 --steps 10 [--models lightgcn,slifmr] [--clock cpu] [--cache-dir DIR]

Every model gathers its batch rows with ``models.base.rows`` (``index_select``, whose backward is
``index_add_``: a fixed summation order) instead of ``x[index]`` (whose backward,
``index_put_(accumulate=True)``, adds repeated rows in a thread-dependent order on the CPU). This
script times each model's training step (forward, backward, Adam) both ways on the same data and
batches, alternating the two, and prints the median step of each and their ratio (issue 18: at
most 1.10). The ``x[index]`` run patches ``rows`` in every model module for the measurement only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amazon_scale import on, sync  # noqa: E402

from slifmr.data.graph_store import GraphStore  # noqa: E402
from slifmr.data.pipeline import build_rec_dataset  # noqa: E402
from slifmr.data.sampling import BPRBatches  # noqa: E402
from slifmr.data.synthetic import SyntheticConfig, amazon_book_scale, generate  # noqa: E402


def fancy_index(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The gather before issue 18: ``x[index]`` (atomic ``index_put_`` backward on the CPU)."""
    return x[index]


def patch_rows(fn) -> list[tuple[object, object]]:
    """Point every loaded model module's ``rows`` at ``fn``; returns what to restore."""
    saved = []
    for name, mod in list(sys.modules.items()):
        if name.startswith("slifmr.models") and hasattr(mod, "rows"):
            saved.append((mod, mod.rows))
            mod.rows = fn
    return saved


def build(name: str, meta: dict, store: GraphStore):
    if name == "lightgcn":
        from slifmr.models.lightgcn import LightGCN

        model = LightGCN(meta, n_layers=3)
    elif name == "slifmr":
        from slifmr.models.slifmr import SLIFMR

        model = SLIFMR(meta, L=2)
    else:
        raise SystemExit(f"--models: {name!r} is not one of lightgcn, slifmr")
    model.attach(store)
    if hasattr(model, "prepare_graphs"):
        model.prepare_graphs()
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--models", default="lightgcn,slifmr")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: the process's CPU time per step (time.process_time), steadier than wall time "
                         "on a machine shared with other jobs; with --threads > 1 it sums the threads")
    ap.add_argument("--cache-dir", default=None, help="feature kNN lists cached here (GraphStore cache_dir)")
    ap.add_argument("--smoke", action="store_true", help="a small synthetic dataset: check the script runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = SyntheticConfig(n_relations=39, feature_dims={"visual": 256, "text": 64}) if args.smoke \
        else amazon_book_scale(seed=0)
    ds = build_rec_dataset(generate(cfg), kcore=0, split="random", ratios=(0.8, 0.1, 0.1), seed=0)
    store = GraphStore(ds, seed=0, cache_dir=args.cache_dir)
    meta = {"n_users": ds.n_users, "n_items": ds.n_items, "n_entities": ds.n_entities,
            "n_relations": ds.n_relations, "features": {k: v.shape[1] for k, v in ds.features.items()},
            "n_kg_relations": store.n_kg_relations}
    batches = BPRBatches(ds.train, ds.n_items, 4096, seed=0)
    out: dict[str, object] = {"threads": args.threads, "steps": args.steps, "clock": args.clock, "users": ds.n_users, "items": ds.n_items}
    for name in args.models.split(","):
        model = build(name, meta, store)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        clock = time.process_time if args.clock == "cpu" else time.perf_counter

        def one(batch: dict) -> float:
            sync()
            t0 = clock()
            opt.zero_grad(set_to_none=True)
            model.loss(batch)["loss"].backward()
            opt.step()
            sync()
            return clock() - t0

        times: dict[str, list[float]] = {"rows": [], "x[index]": []}
        one(on(batches[0], "cpu"))  # warm-up: graph caches, allocator
        for s in range(1, args.steps + 1):  # alternate, so load changes hit both alike
            batch = on(batches[s % len(batches)], "cpu")
            for how in (("rows", "x[index]") if s % 2 else ("x[index]", "rows")):
                saved = patch_rows(fancy_index) if how == "x[index]" else []
                try:
                    times[how].append(one(batch))
                finally:
                    for mod, fn in saved:
                        mod.rows = fn
        med = {k: statistics.median(v) for k, v in times.items()}
        out[name] = {"rows_step_s": round(med["rows"], 4), "index_step_s": round(med["x[index]"], 4),
                     "rows_over_index": round(med["rows"] / med["x[index]"], 3)}
        print(json.dumps({name: out[name]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
