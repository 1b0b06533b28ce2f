"""Each SLIF-MR loss term's value and how hard it pulls on the item ID table, over the first steps.

    python scripts/loss_gradient_scale.py dataset=ml-100k-kg paths.data_dir=../shared/data
    python scripts/loss_gradient_scale.py model.consistency.beta=0.1 --steps 60 --every 20

Prints the BPR loss and ||d term / d item_emb|| for BPR, beta * inter (Eq. 19-20) and
gamma * intra (Eq. 21-22) at the configured weights, and the ratio of each auxiliary term to BPR
(``model.consistency.enabled=false`` leaves BPR alone: how fast BPR falls without the other terms). Why it exists: the
cosine-based consistency terms have gradients hundreds of times BPR's at initialisation (the
mean-reduced BPR on small embeddings is tiny, the InfoNCE on normalised ones is not), so the
paper's beta = 0.1 lets them steer Adam's steps; docs/results.md uses these figures to explain
the default beta. Any `train` override works; Adam at the configured lr, batch size, seed 0.
"""

from __future__ import annotations

import argparse

import hydra
import torch
from hydra import compose, initialize_config_module

from slifmr.config import register_resolvers
from slifmr.data.sampling import BPRBatches


def term_grad_norms(model, batch: dict) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """(norm of each weighted term's gradient on ``item_emb``, the model's loss terms)."""
    out = model.loss(batch)
    weights = {"bpr": 1.0}
    if model.cons["enabled"]:
        weights.update(inter=model.cons["beta"], intra=model.cons["gamma"])
    table = model.item_emb.weight
    norms = {}
    for name, w in weights.items():
        (g,) = torch.autograd.grad(w * out[name], table, retain_graph=True)
        norms[name] = float(g.norm())
    return norms, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=41)
    ap.add_argument("--every", type=int, default=10)
    args, overrides = ap.parse_known_args(argv)
    register_resolvers()
    torch.set_num_threads(1)
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if "slifmr" not in cfg.model._target_.lower():
        raise SystemExit(f"this probe is for SLIF-MR; model._target_ is {cfg.model._target_}")
    torch.manual_seed(0)
    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    dm.setup()
    model = hydra.utils.instantiate(cfg.model, meta=dm.meta, _convert_="all")
    model.attach(dm.graphs)
    model.train()
    batches = BPRBatches(dm.data.train, dm.data.n_items, dm.batch_size, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.model.lr)
    print(f"{cfg.dataset.name}: beta={model.cons['beta']} gamma={model.cons['gamma']} "
          f"(consistency {'on' if model.cons['enabled'] else 'off'})")
    print("step  bpr      |g bpr|     |g beta*inter|  |g gamma*intra|  inter/bpr  intra/bpr")
    for step in range(args.steps):
        dm.graphs.set_epoch(step // len(batches))
        norms, out = term_grad_norms(model, batches[step % len(batches)])
        if step % args.every == 0:
            b = norms["bpr"]
            ratios = "".join(f"  {norms[k] / b:9.2f}" for k in ("inter", "intra") if k in norms)
            print(f"{step:4d}  {float(out['bpr']):.4f}  {b:9.2e}  {norms.get('inter', 0.0):14.2e}  "
                  f"{norms.get('intra', 0.0):15.2e}{ratios}")
        opt.zero_grad()
        out["loss"].backward()
        opt.step()


if __name__ == "__main__":
    main()
