"""Profile one model's training step (loss, backward, Adam) with torch.profiler on a synthetic set.

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model kgrec --steps 3
    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model lightgcn --scale amazon

Prints the median step seconds (unprofiled steps after one warm-up) and the profiler's top ops,
grouped by input shape, over ``--steps`` profiled steps (self CPU time; ms per step). ``--scale
medium`` (default): 20k users, 8k items, 250k interactions, 28 triples per item, 256-d + 64-d
features; ``amazon``: :func:`~slifmr.data.synthetic.amazon_book_scale`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra.utils import instantiate

from slifmr.config import register_resolvers
from slifmr.data.graph_store import GraphStore
from slifmr.data.pipeline import build_rec_dataset
from slifmr.data.sampling import BPRBatches
from slifmr.data.synthetic import SyntheticConfig, amazon_book_scale, generate

from models_speed import model_config  # noqa: E402  (same folder)


def medium() -> SyntheticConfig:
    return SyntheticConfig(n_users=20000, n_items=8000, n_interactions=250000, n_relations=39, triples_per_item=28,
                           n_attributes=20000, feature_dims={"visual": 256, "text": 64})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="kgrec")
    ap.add_argument("--scale", choices=("medium", "amazon"), default="medium")
    ap.add_argument("--steps", type=int, default=3, help="profiled steps (after timing)")
    ap.add_argument("--timed", type=int, default=5, help="unprofiled timed steps after one warm-up")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    register_resolvers()
    raw = generate(medium() if args.scale == "medium" else amazon_book_scale(seed=0))
    ds = build_rec_dataset(raw, kcore=0, split="random", ratios=(0.8, 0.1, 0.1), seed=0)
    store = GraphStore(ds, seed=0)
    meta = {"n_users": ds.n_users, "n_items": ds.n_items, "n_entities": ds.n_entities,
            "n_relations": ds.n_relations, "features": {k: int(v.shape[1]) for k, v in ds.features.items()},
            "n_kg_relations": store.n_kg_relations}
    torch.manual_seed(0)
    model = instantiate(model_config(args.model), meta=meta, _convert_="all")
    model.attach(store)
    opt = model.configure_optimizers()  # the optimiser training uses (fused Adam)
    opt = opt[0] if isinstance(opt, (list, tuple)) else opt
    batches = BPRBatches(ds.train, ds.n_items, args.batch, seed=0)

    def step(b: int) -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(batches[b % len(batches)])["loss"].backward()
        opt.step()

    step(0)
    times = []
    for b in range(1, args.timed + 1):
        t0 = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t0)
    print(f"{args.model}: median step {statistics.median(times):.3f} s over {len(times)} "
          f"(min {min(times):.3f}); users {ds.n_users} items {ds.n_items} entities {ds.n_entities} "
          f"triples {len(ds.kg)} train {len(ds.train)}", flush=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for b in range(args.steps):
            step(100 + b)
    ka = prof.key_averages(group_by_input_shape=True)
    print(ka.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40,
                   max_shapes_column_width=60))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=args.rows, max_name_column_width=50))


if __name__ == "__main__":
    main()
