"""Where SLIF-MR's training step goes at Amazon-Book scale, against LightGCN's step, on the CPU.

    OMP_NUM_THREADS=1 python benchmarks/slifmr_breakdown.py --cache-dir /tmp/amzcache

Builds what ``amazon_scale.py --part slifmr`` builds (synthetic Amazon-Book scale, LightGCN with 3
layers, SLIF-MR with L=2 at ``--prune-ratio``, one self-loop refresh injected), then times, in this
process's CPU time (``time.process_time``: a loaded machine perturbs it far less than wall time),
each part forward + backward with a fixed upstream gradient, all parts interleaved round after
round so a drifting load perturbs them alike; prints the medians over ``--rounds`` as JSON.
Parts: the whole steps (loss, backward, Adam) of LightGCN and SLIF-MR; SLIF-MR's interaction
encoder, feature-graph encoder, KG encoder (and inside it the attention scores, the segment
softmax, the L-layer propagation) and its two consistency losses on a batch's distinct items.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from slifmr.callbacks.self_loop import SelfLoopCallback
from slifmr.data.graph_store import GraphStore
from slifmr.data.pipeline import build_rec_dataset
from slifmr.data.sampling import BPRBatches
from slifmr.data.synthetic import amazon_book_scale, generate
from slifmr.graphs.kg import kg_propagate, segment_softmax
from slifmr.models.encoders.interaction import lightgcn_readout
from slifmr.models.encoders.kg_attention import relation_scores
from slifmr.models.lightgcn import LightGCN
from slifmr.models.losses import inter_modal_loss, uniformity_loss
from slifmr.models.slifmr import SLIFMR


def stepper(model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def one(batch: dict) -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(batch)["loss"].backward()
        opt.step()

    return one


def backward(y: torch.Tensor) -> None:
    y.backward(torch.full_like(y, 1e-2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--prune-ratio", type=float, default=0.0)
    ap.add_argument("--cache-dir", default=None, help="feature kNN lists cached here (GraphStore cache_dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = build_rec_dataset(generate(amazon_book_scale(seed=0)), kcore=0, split="random", ratios=(0.8, 0.1, 0.1),
                           seed=0)
    store = GraphStore(ds, seed=0, cache_dir=args.cache_dir)
    batches = BPRBatches(ds.train, ds.n_items, 4096, seed=0)
    meta = {"n_users": ds.n_users, "n_items": ds.n_items, "n_entities": ds.n_entities,
            "n_relations": ds.n_relations, "features": {k: v.shape[1] for k, v in ds.features.items()},
            "n_kg_relations": store.n_kg_relations}
    lgcn = LightGCN(meta, n_layers=3)
    lgcn.attach(store)
    model = SLIFMR(meta, L=2, prune_ratio=args.prune_ratio)
    model.attach(store)
    cb = SelfLoopCallback()  # one refresh, as amazon_scale.py: the steps see the sim relation and G block
    store.set_item_graph(cb.build(model.item_representations(), model.self_loop), model.self_loop.a_block)
    model.prepare_graphs()

    adj, s_graphs, kg = model.step_graphs(True)
    heads, tails, ptr, st = kg
    enc = model.kg_encoder
    g = torch.Generator().manual_seed(1)

    def leaf(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.1).requires_grad_()

    ego, x_item, x_kg = leaf(ds.n_users + ds.n_items, 64), leaf(ds.n_items, 64), leaf(st.n_cols, 64)
    weights = segment_softmax(relation_scores(x_kg, enc.rel_w, enc.rel_emb, st).detach(), heads, st.n_entities)
    weights.requires_grad_()
    scores0 = weights.detach().clone().requires_grad_()
    views = leaf(3, ds.n_items, 64)
    fused = torch.randn(ds.n_items, 64, generator=g)
    items = torch.unique(torch.as_tensor(batches[1]["pos"]))

    def propagate() -> torch.Tensor:
        x = acc = x_kg
        for _ in range(enc.n_layers):
            x = kg_propagate(heads, tails, weights, x, st.n_entities, pattern=st.adjacency)
            acc = acc + x
        return acc

    def losses() -> None:
        stacked = views.index_select(1, items)
        (inter_modal_loss(stacked, fused.index_select(0, items), 0.2).sum() * 1e-3
         + uniformity_loss(stacked, 2.0).sum() * 1e-5).backward()

    lg_step, sl_step = stepper(lgcn), stepper(model)
    parts = {
        "lightgcn_step": lambda: lg_step(batches[1]),
        "slifmr_step": lambda: sl_step(batches[1]),
        "interaction_encoder": lambda: backward(lightgcn_readout(adj, ego, model.L_b, model.readout)),
        "feature_encoder": lambda: backward(model.feature_encoder(s_graphs, x_item)),
        "kg_encoder": lambda: backward(enc(x_kg, heads, tails, ptr, st)),
        "kg_scores": lambda: backward(relation_scores(x_kg, enc.rel_w, enc.rel_emb, st)),
        "kg_softmax": lambda: backward(segment_softmax(scores0, heads, st.n_entities)),
        "kg_propagation": lambda: backward(propagate()),
        "consistency_losses": losses,
    }
    for f in parts.values():  # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(args.rounds):
        for k, f in parts.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    out = {f"{k}_cpu_s": round(statistics.median(v), 4) for k, v in times.items()}
    out["slifmr_over_lightgcn"] = round(out["slifmr_step_cpu_s"] / out["lightgcn_step_cpu_s"], 3)
    out.update(rounds=args.rounds, prune_ratio=args.prune_ratio, kg_edges=st.n_edges,
               kg_head_pairs=st.pairs.n_head_pairs, batch_distinct_items=int(items.numel()))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
