"""Print SLIF-MR's loss terms over the first training steps, outside Lightning.

    python scripts/bpr_probe.py dataset=ml-100k-kg paths.data_dir=../shared/data model.readout=mean
    python scripts/bpr_probe.py ... consistency.enabled=false

Used to show that the inter-modal consistency loss stalls BPR early (docs/results.md).
Any `train` override works; steps use the configured lr and batch size, seed 0.
"""

from __future__ import annotations

import sys

import hydra
import torch
from hydra import compose, initialize_config_module

from slifmr.config import register_resolvers
from slifmr.data.sampling import BPRBatches


def main(overrides: list[str], steps: int = 40, every: int = 8) -> None:
    register_resolvers()
    torch.set_num_threads(1)
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    torch.manual_seed(0)
    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    dm.setup()
    model = hydra.utils.instantiate(cfg.model, meta=dm.meta, _convert_="all")
    model.attach(dm.graphs)
    batches = BPRBatches(dm.data.train, dm.data.n_items, dm.batch_size, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.model.lr)
    for step in range(steps):
        losses = model.loss(batches[step % len(batches)])
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        if step % every == 0:
            print(step, {k: round(float(v), 4) for k, v in losses.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
