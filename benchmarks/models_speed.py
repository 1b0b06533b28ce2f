"""Seconds per training epoch of every model at the paper's Amazon-Book scale (synthetic).

    python benchmarks/models_speed.py --threads 2 --steps 6
    python benchmarks/models_speed.py --models lightgcn,kgat --steps 10
    python benchmarks/models_speed.py --smoke            # small data: check the script runs

Each model is built from its own ``conf/model/<name>.yaml`` (Hydra compose, as training does)
and trained by a real Lightning ``Trainer`` for ``--steps + 1`` batches of 4,096, so whatever
the model does in its training step (alternating CF/KG steps, manual optimisation, per-epoch
hooks) is what is timed. Seconds per epoch = median batch time (first batch dropped: caches
and allocator warm-up) x batches per epoch + the per-epoch overhead the model adds outside its
batches (epoch hooks such as an attention refresh), measured as the fit's wall time minus its
batches. Validation and the self-loop refresh are not included: ``amazon_scale.py`` times those.

Models that regenerate rows once per epoch with a denoiser (DiffMM, DiffKG: ``regenerate``,
``n_generated_rows``) would spend most of a short timing run in that regeneration; it is linear in
the rows (equal chunks), so it is timed on ``--regen-chunks`` chunks and scaled to all rows, then
added to the epoch (``regenerate_s``, an extrapolation), and the fit times the steps only.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from slifmr.config import register_resolvers
from slifmr.data.graph_store import GraphStore
from slifmr.data.pipeline import build_rec_dataset
from slifmr.data.sampling import BPRBatches
from slifmr.data.synthetic import SyntheticConfig, amazon_book_scale, generate

ALL_MODELS = ("mf", "lightgcn", "ngcf", "bm3", "freedom", "tmfun", "diffmm", "kgat", "kgin", "kgcl", "kgrec",
              "krdn", "kacl", "diffkg", "slifmr")


class _Data(pl.LightningDataModule):
    """The pieces of RecDataModule a training epoch touches, over an in-memory dataset."""

    def __init__(self, ds, graphs: GraphStore, batch_size: int = 4096, seed: int = 0):
        super().__init__()
        self.data, self.graphs = ds, graphs
        self.batches = BPRBatches(ds.train, ds.n_items, batch_size, seed)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self.batches.set_epoch(epoch)
        self.graphs.set_epoch(epoch)
        return DataLoader(self.batches, batch_size=None, shuffle=False)


class _BatchTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._t0)


def model_config(name: str):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}"])
    return cfg.model


def time_regeneration(model, graphs, n_chunks: int) -> float:
    """Seconds of the model's whole per-epoch regeneration, from ``n_chunks`` chunks scaled linearly;
    afterwards the model's regeneration is a no-op (its graphs stay those of the timed prefix)."""
    model.attach(graphs)
    rows = min(model.n_generated_rows, n_chunks * model.rebuild_chunk)
    model.regenerate(n_rows=1)  # builds the model's inputs and graphs: not part of an epoch
    t0 = time.perf_counter()
    model.regenerate(n_rows=rows)
    seconds = (time.perf_counter() - t0) * model.n_generated_rows / rows
    model.regenerate = lambda n_rows=None: None
    return seconds


def time_model(name: str, dm: _Data, meta: dict, steps: int, regen_chunks: int = 2) -> dict[str, float]:
    torch.manual_seed(0)
    model = instantiate(model_config(name), meta=meta, _convert_="all")
    regen = time_regeneration(model, dm.graphs, regen_chunks) if hasattr(model, "regenerate") else 0.0
    timer = _BatchTimer()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=steps + 1, limit_val_batches=0,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         accelerator="cpu", devices=1)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    wall = time.perf_counter() - t0
    step = statistics.median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0]
    overhead = max(0.0, wall - sum(timer.times))
    n_batches = len(dm.batches)
    out = {"step_s": step, "epoch_s": step * n_batches + overhead + regen, "epoch_overhead_s": overhead,
           "first_step_s": timer.times[0], "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if regen:
        out["regenerate_s"] = regen
    return out


def _rounded(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--regen-chunks", type=int, default=2, help="chunks of rows timed for a per-epoch regeneration")
    ap.add_argument("--smoke", action="store_true", help="a small synthetic dataset: check the script runs")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    register_resolvers()
    torch.set_num_threads(args.threads)

    cfg = SyntheticConfig(n_relations=39, feature_dims={"visual": 256, "text": 64}) if args.smoke \
        else amazon_book_scale(seed=0)
    raw = generate(cfg)
    ds = build_rec_dataset(raw, kcore=0, split="random", ratios=(0.8, 0.1, 0.1), seed=0)
    del raw
    store = GraphStore(ds, seed=0)
    t0 = time.perf_counter()
    store.feature_knn(10)  # built once per dataset (cached by the store); not part of an epoch
    knn_s = time.perf_counter() - t0
    dm = _Data(ds, store)
    meta = {"n_users": ds.n_users, "n_items": ds.n_items, "n_entities": ds.n_entities,
            "n_relations": ds.n_relations, "features": {k: int(v.shape[1]) for k, v in ds.features.items()},
            "n_kg_relations": store.n_kg_relations}
    out: dict = {"threads": args.threads, "users": ds.n_users, "items": ds.n_items,
                 "train_interactions": int(len(ds.train)), "triples": int(len(ds.kg)),
                 "batches_per_epoch": len(dm.batches), "feature_knn_build_s": knn_s, "models": {}}
    for name in args.models.split(","):
        try:
            out["models"][name] = time_model(name, dm, meta, args.steps, args.regen_chunks)
        except Exception as e:  # report and go on: one broken model must not hide the others
            out["models"][name] = {"error": f"{type(e).__name__}: {e}"}
        print(name, json.dumps(out["models"][name]), flush=True)
    base = out["models"].get("lightgcn", {}).get("epoch_s")
    if base:
        for r in out["models"].values():
            if "epoch_s" in r:
                r["over_lightgcn"] = r["epoch_s"] / base
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    text = json.dumps(_rounded(out), indent=1)
    print(text)
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
