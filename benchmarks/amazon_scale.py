"""Speed and memory at the paper's Amazon-Book scale (synthetic), on whatever machine runs it.

    python benchmarks/amazon_scale.py --part foundation   # issue: preparation, LightGCN epoch, full ranking
    python benchmarks/amazon_scale.py --part slifmr       # SLIF-MR epoch vs LightGCN, kNN build, self-loop
    python benchmarks/amazon_scale.py --part all --threads 2 --steps 20

Seconds per epoch are the median step time over ``--steps`` training steps (after one warm-up
step) times the number of steps in an epoch (train interactions / 4096), plus nothing else:
validation is timed separately as the full-ranking pass. Figures are medians of ``--repeats``
runs. Peak RSS is the process's maximum resident set size (getrusage), in GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from slifmr.data.graph_store import GraphStore
from slifmr.data.pipeline import build_rec_dataset
from slifmr.data.sampling import BPRBatches, RankingBatches
from slifmr.data.synthetic import amazon_book_scale, generate


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def sync() -> None:
    """Wait for the GPU's queued work before reading a timer (CUDA calls return before they run)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def on(batch: dict, device: torch.device) -> dict:
    """A batch's tensors on the model's device (moved before the timer starts)."""
    return {k: (torch.as_tensor(v).to(device) if not isinstance(v, (int, float)) else v) for k, v in batch.items()}


def timed(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


# The training steps' timer: wall time, or with --clock process this process's CPU time
# (time.process_time), which other jobs on a loaded machine perturb far less (CPU only).
STEP_CLOCK = time.perf_counter


def step_seconds(model, batches: BPRBatches, steps: int) -> float:
    return alternated_step_seconds([model], batches, steps)[0]


def alternated_step_seconds(models: list, batches: BPRBatches, steps: int) -> list[float]:
    """Median step time of each model over ``steps`` steps (after one warm-up step each), the
    models' steps interleaved (model 0, model 1, ..., model 0, ...) on the same batches, so that
    a machine whose load drifts perturbs them alike."""
    steppers = []
    for model in models:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def one(batch: dict, model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            model.loss(batch)["loss"].backward()
            opt.step()

        dev = next(model.parameters()).device
        one(on(batches[0], dev))  # warm-up: graph caches, allocator
        steppers.append((one, dev))
    ts: list[list[float]] = [[] for _ in models]
    for b in range(1, steps + 1):
        for (one, dev), t in zip(steppers, ts):
            batch = on(batches[b % len(batches)], dev)
            sync()
            t0 = STEP_CLOCK()
            one(batch)
            sync()
            t.append(STEP_CLOCK() - t0)
    return [statistics.median(t) for t in ts]


def ranking_pass(model, ds, batch_size: int) -> tuple[float, float]:
    """(seconds of the full-ranking test pass over all users, seconds of the bare score product)."""
    model.eval()
    loader = RankingBatches(np.concatenate([ds.train, ds.valid]), ds.test, ds.n_users, batch_size)
    model.test_metrics.reset()
    with torch.no_grad():
        model._eval_cache = model.embeddings()  # propagation is timed with the epoch, not here
        dev = model._eval_cache[0].device
        sync()
        t0 = time.perf_counter()
        for b in range(len(loader)):
            model._rank(on(loader[b], dev), model.test_metrics)
        model.test_metrics.compute()
        sync()
        full = time.perf_counter() - t0
        users, items = model._eval_cache
        t0 = time.perf_counter()
        for a in range(0, len(loader.users), batch_size):
            u = torch.from_numpy(loader.users[a : a + batch_size]).to(dev)
            users[u] @ items.T
        sync()
        bare = time.perf_counter() - t0
    model._eval_cache = None
    model.train()
    return full, bare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["foundation", "slifmr", "all"], default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-batch", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kg-attention-every", default="1,8",
                    help="SLIF-MR steps are timed for each value (1 = exact per-step KG attention)")
    ap.add_argument("--prune-ratio", type=float, default=None,
                    help="SLIF-MR's model.prune_ratio (default: the model's own default); the step's cost "
                         "falls with it, so compare runs at the same ratio")
    ap.add_argument("--cache-dir", default=None,
                    help="feature kNN lists cached here (GraphStore cache_dir): a second run skips the build")
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="training steps timed in wall time or in this process's CPU time (CPU only: a "
                         "loaded machine moves wall time up to 3x, CPU time far less)")
    ap.add_argument("--alternate", action="store_true",
                    help="time SLIF-MR's steps interleaved with LightGCN's (the ratio from those pairs)")
    ap.add_argument("--smoke", action="store_true", help="a small synthetic dataset: check the script runs")
    args = ap.parse_args()
    if args.clock == "process":
        if args.device != "cpu":
            ap.error("--clock process times CPU work only: use it with --device cpu")
        global STEP_CLOCK
        STEP_CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out: dict[str, float] = {"threads": args.threads, "step_clock": args.clock}

    t0 = time.perf_counter()
    cfg = amazon_book_scale(seed=0)
    if args.smoke:
        from slifmr.data.synthetic import SyntheticConfig

        cfg = SyntheticConfig(n_relations=39, feature_dims={"visual": 256, "text": 64})
    raw = generate(cfg)
    out["generate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = build_rec_dataset(raw, kcore=0, split="random", ratios=(0.8, 0.1, 0.1), seed=0)
    store = GraphStore(ds, seed=0, cache_dir=args.cache_dir)
    store.interaction_adj()
    out["prepare_s"] = time.perf_counter() - t0
    del raw
    out.update(users=ds.n_users, items=ds.n_items, train=len(ds.train), triples=len(ds.kg))
    batches = BPRBatches(ds.train, ds.n_items, 4096, seed=0)
    steps_per_epoch = len(batches)
    out["steps_per_epoch"] = steps_per_epoch
    dev = torch.device(args.device)

    from slifmr.models.lightgcn import LightGCN

    meta = {"n_users": ds.n_users, "n_items": ds.n_items, "n_entities": ds.n_entities,
            "n_relations": ds.n_relations, "features": {k: v.shape[1] for k, v in ds.features.items()},
            "n_kg_relations": store.n_kg_relations}
    lgcn = LightGCN(meta, n_layers=3).to(dev)
    lgcn.attach(store)
    out["lightgcn_step_s"] = step_seconds(lgcn, batches, args.steps)
    out["lightgcn_epoch_s"] = out["lightgcn_step_s"] * steps_per_epoch
    if args.part in ("foundation", "all"):
        runs = [ranking_pass(lgcn, ds, args.eval_batch) for _ in range(args.repeats)]
        out["full_ranking_s"] = statistics.median(r[0] for r in runs)
        out["bare_score_product_s"] = statistics.median(r[1] for r in runs)
        out["ranking_over_bare"] = out["full_ranking_s"] / out["bare_score_product_s"]
        out["peak_rss_gb_after_foundation"] = peak_rss_gb()

    if args.part in ("slifmr", "all"):
        from slifmr.callbacks.self_loop import SelfLoopCallback
        from slifmr.models.slifmr import SLIFMR

        t0 = time.perf_counter()
        store.feature_knn(10)
        out["feature_knn_build_s"] = time.perf_counter() - t0
        everies = [int(v) for v in args.kg_attention_every.split(",")]
        extra = {} if args.prune_ratio is None else {"prune_ratio": args.prune_ratio}
        model = SLIFMR(meta, L=2, kg_attention_every=everies[0], **extra).to(dev)
        out["slifmr_prune_ratio"] = model.prune_ratio
        model.attach(store)
        cb = SelfLoopCallback()

        def refresh() -> None:  # what SelfLoopCallback.on_train_epoch_end does: new G^n, its graphs rebuilt
            cb.raw = cb.build(model.item_representations(), model.self_loop)
            store.set_item_graph(cb.raw, model.self_loop.a_block)
            model.prepare_graphs(training=False)

        refresh()  # inject once so the timed steps see the enhanced graphs (sim relation, G block)
        for every in everies:
            model.kg_encoder.attention_every = every
            n = max(args.steps, 2 * every)
            if args.alternate:  # LightGCN timed again, its steps interleaved with SLIF-MR's
                base, step = alternated_step_seconds([lgcn, model], batches, n)
                out[f"lightgcn_step_s[alternated, kg_every={every}]"] = base
            else:
                base, step = out["lightgcn_step_s"], step_seconds(model, batches, n)
            out[f"slifmr_step_s[kg_every={every}]"] = step
            out[f"slifmr_epoch_s[kg_every={every}]"] = step * steps_per_epoch
            out[f"slifmr_over_lightgcn[kg_every={every}]"] = step / base
        out["slifmr_epoch_s"] = out[f"slifmr_epoch_s[kg_every={everies[0]}]"]
        out["self_loop_refresh_s"] = timed(refresh, args.repeats)
        with torch.no_grad():
            x = torch.nn.functional.normalize(model.item_representations(), dim=1)
            out["items_x_items_product_s"] = timed(
                lambda: [x[a : a + 1024] @ x.T for a in range(0, len(x), 1024)], args.repeats)
        out["refresh_over_product"] = out["self_loop_refresh_s"] / out["items_x_items_product_s"]
        out["refresh_share_of_epoch"] = out["self_loop_refresh_s"] / out["slifmr_epoch_s"]
        out["kg_edges_with_inverse_and_sim"] = int(store.kg_edges()[0].numel())
    out["peak_rss_gb"] = peak_rss_gb()
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
