"""Multi-GPU correctness, checked with `trainer=ddp_sim` (2 CPU processes, gloo).

What DDP must not change:
- the BPR batches: rank r gets the r-th slice of the same global batch, so the gradient
  all-reduce (an average over ranks) of the slices' mean losses, each weighted by its share,
  is the whole batch's mean gradient -- the single-process gradient up to float rounding;
- evaluation: each rank ranks its own share of the users, no user twice (Lightning's
  DistributedSampler would pad the last round with repeated batches), metric sums all-reduced;
- the self-loop graph: built on rank 0 and broadcast.

The end-to-end comparison runs `python -m slifmr.train` in subprocesses, because Lightning's DDP
launcher re-executes the command line for rank 1 (it would re-run pytest otherwise).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slifmr.data.sampling import BPRBatches, EveryBatch, RankingBatches, shard_bounds

# -- the sharding itself (fast, no processes) ----------------------------------------------------


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (7, 2), (8, 2), (10, 3), (5, 8)])
def test_shard_bounds_partition(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, disjoint
    sizes = [e - s for s, e in bounds]
    assert max(sizes) - min(sizes) <= 1


def _train_pairs(n: int = 103, n_users: int = 11, n_items: int = 17) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], axis=1)


@pytest.mark.parametrize("world", [2, 3])
def test_bpr_ranks_split_each_global_batch(world):
    """Concatenating the ranks' slices gives the single-process batch, triple for triple."""
    pairs = _train_pairs()
    single = BPRBatches(pairs, 17, batch_size=20, seed=5)
    ranks = [BPRBatches(pairs, 17, batch_size=20, seed=5, rank=r, world_size=world) for r in range(world)]
    for ds in (single, *ranks):
        ds.set_epoch(3)
    assert all(len(ds) == len(single) for ds in ranks)  # 103 = 5 x 20 + 3: the tail of 3 >= world
    for b in range(len(single)):
        whole = single[b]
        parts = [ds[b] for ds in ranks]
        for key in ("users", "pos", "neg"):
            assert torch.equal(torch.cat([p[key] for p in parts]), whole[key])
        # the weights make the average of the slices' means the whole batch's mean
        scales = torch.stack([p["grad_scale"] for p in parts])
        sizes = torch.tensor([len(p["users"]) for p in parts], dtype=torch.float64)
        assert float(sizes.sum()) == len(whole["users"]) and float(scales.sum()) == pytest.approx(world)
        x = torch.rand(len(whole["users"]), dtype=torch.float64)
        slices = x.split(sizes.long().tolist())
        ddp_mean = sum(float(s * xs.mean()) for s, xs in zip(scales.double(), slices)) / world
        assert ddp_mean == pytest.approx(float(x.mean()), rel=1e-6)
    assert "grad_scale" not in single[0]  # single-process batches are unchanged


def test_bpr_tail_shorter_than_world_sits_out():
    """A last batch with fewer rows than ranks would give a rank an empty (NaN) loss."""
    pairs = _train_pairs(n=41)  # 2 x 20 + 1
    assert len(BPRBatches(pairs, 17, batch_size=20, seed=0)) == 3
    ranks = [BPRBatches(pairs, 17, batch_size=20, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [len(ds) for ds in ranks] == [2, 2]
    assert all(len(ds[1]["users"]) == 10 for ds in ranks)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranking_shards_cover_every_user_once(world):
    """Same number of chunks on every rank (no collective waits), each user in exactly one."""
    known = _train_pairs(n=60, n_users=13, n_items=9)
    truth = np.array([[u, (u * 5) % 9] for u in range(13) if u != 4])  # user 4 has no ground truth
    single = RankingBatches(known, truth, 13, batch_size=4)
    ranks = [RankingBatches(known, truth, 13, batch_size=4, rank=r, world_size=world) for r in range(world)]
    assert len({len(ds) for ds in ranks}) == 1
    seen = [int(u) for ds in ranks for b in range(len(ds)) for u in ds[b]["users"]]
    assert sorted(seen) == [int(u) for b in range(len(single)) for u in single[b]["users"]]
    assert len(seen) == len(set(seen)) == 12


def test_loaders_keep_every_batch_under_ddp():
    """EveryBatch yields all indices once, and Lightning leaves DistributedSamplers alone."""
    from pytorch_lightning.trainer.connectors.data_connector import _DataConnector  # noqa: F401
    from torch.utils.data import DataLoader, DistributedSampler

    ds = RankingBatches(_train_pairs(n=60, n_users=13, n_items=9), np.array([[u, 1] for u in range(13)]), 13, 3)
    sampler = EveryBatch(ds)
    assert list(sampler) == list(range(len(ds)))
    loader = DataLoader(ds, batch_size=None, sampler=sampler)
    assert isinstance(loader.sampler, DistributedSampler)  # what Lightning checks before injecting its own


# -- end to end: DDP on 2 processes against one process ------------------------------------------

# Test metrics after training, DDP vs one process. Measured: equal to ~1e-16 (LightGCN and
# SLIF-MR w/o CL, 2 epochs on ml-100k-kg-tiny). They are means of 0/1 hits over ~165 users, so
# they stay equal unless float rounding swaps two items at a top-K boundary, which moves one
# metric by ~1/(165 n_rel); 1e-2 tolerates a swap on another CPU. Structural errors are caught
# by the weights (WEIGHT_ATOL) and, for evaluation, by test_ddp_evaluates_like_one_process.
TRAIN_ATOL = 1e-2
# Weights after training (max abs difference; embeddings are ~0.1 in size). Measured: ~1e-5
# (Adam's first steps divide by sqrt(v), which amplifies rounding of tiny gradients).
WEIGHT_ATOL = 1e-3
# Evaluating the same weights: per-user values are identical, only the float64 sums are added in
# another order, so the means agree to ~1e-16; 1e-12 leaves room and still catches one user
# counted twice or dropped (>= 1e-4 on a few hundred users).
EVAL_ATOL = 1e-12

COMMON = ["dataset=ml-100k-kg-tiny", "logger=csv", "trainer.enable_progress_bar=false"]


def _run(module: str, run_dir: Path, shared_data: Path, cache: Path,
         overrides: list[str]) -> dict[str, list[float]]:
    """Run an entry point in a subprocess; every logged value of every metric (CSV logger)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", SLIFMR_CACHE_DIR=str(cache), WANDB_MODE="offline")
    cmd = [sys.executable, "-m", module, *COMMON, f"paths.data_dir={shared_data}", f"hydra.run.dir={run_dir}",
           *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out: dict[str, list[float]] = {}
    with open(next(run_dir.glob("csv/version_*/metrics.csv"))) as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v not in ("", None):
                    out.setdefault(k, []).append(float(v))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", [["model=lightgcn"], ["model=slifmr", "model.consistency.enabled=false"]],
                         ids=["lightgcn", "slifmr-wo-cl"])
def test_ddp_training_matches_single_process(tmp_path, shared_data, model):
    """2 epochs of 5 global batches of 1024, `trainer=ddp_sim` against one process.

    The ranks train on the two slices of the same global batches, so the all-reduced gradient
    is the single-process gradient up to float32 rounding (the additions run in another
    order): weights, validation and test metrics must agree to the tolerances above. SLIF-MR
    runs without its consistency losses, which contrast the items of a rank's slice only; with
    them DDP is a different (if equally valid) objective. Its self-loop graph is built on rank
    0 and broadcast, and must be the graph the single process builds.
    """
    args = [*model, "callbacks.progress_bar=null", "trainer.max_epochs=2", "dataset.batch_size=1024", "seed=3",
            "callbacks.model_checkpoint.save_last=true"]
    cache = tmp_path / "cache"
    single = _run("slifmr.train", tmp_path / "single", shared_data, cache, args)
    ddp = _run("slifmr.train", tmp_path / "ddp", shared_data, cache, [*args, "trainer=ddp_sim"])

    keys = [k for k in single if k.startswith("test/")]
    assert len(keys) == 9 and set(keys) <= set(ddp)
    diffs = {k: abs(single[k][-1] - ddp[k][-1]) for k in keys}
    print(f"max |single - ddp| over test metrics: {max(diffs.values()):.3g}")
    assert max(diffs.values()) <= TRAIN_ATOL, diffs
    assert len(single["val/recall@20"]) == len(ddp["val/recall@20"]) == 2  # the same epochs
    assert np.allclose(single["val/recall@20"], ddp["val/recall@20"], rtol=0, atol=TRAIN_ATOL)
    # the logged epoch loss is a mean of rank means (slices differ by a row): close, not equal
    assert np.allclose(single["train/loss"], ddp["train/loss"], rtol=1e-3)

    a = torch.load(tmp_path / "single/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "ddp/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    weights = [k for k, v in a["state_dict"].items() if v.is_floating_point()]
    worst = max(float((a["state_dict"][k] - b["state_dict"][k]).abs().max()) for k in weights)
    print(f"max |single - ddp| over weights: {worst:.3g}")
    assert worst <= WEIGHT_ATOL
    graphs = [c.get("SelfLoopCallback", {}) for c in (a["callbacks"], b["callbacks"])]
    if "raw_indices" in graphs[0]:
        edges = [{tuple(e) for e in g["raw_indices"].T.tolist()} for g in graphs]
        assert len(edges[0] ^ edges[1]) <= 0.01 * len(edges[0])  # measured: identical


@pytest.mark.slow
def test_ddp_evaluates_like_one_process(tmp_path, shared_data):
    """The strongest property, exact: the same checkpoint evaluates identically under DDP."""
    from hydra_compose import make_cfg

    from slifmr.evaluate import evaluate
    from slifmr.train import train

    # chunks of 40 users: 5 for the ~165 test users, an odd number, so Lightning's sampler would
    # pad rank 1 with a repeat of chunk 0 (40 users counted twice)
    common = [*COMMON, f"paths.data_dir={shared_data}", "model=lightgcn", "dataset.eval_batch_size=40"]
    trained = train(make_cfg(tmp_path, [*common, "trainer.max_epochs=1", "callbacks.progress_bar=null"]))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    alone = evaluate(make_cfg(tmp_path / "e", [*common, f"ckpt_path={ckpt}"], config_name="eval"))
    both = _run("slifmr.evaluate", tmp_path / "ddp", shared_data, tmp_path / "cache",
                ["model=lightgcn", "dataset.eval_batch_size=40", f"ckpt_path={ckpt}", "trainer=ddp_sim"])
    keys = [k for k in trained if k.startswith("test/")]
    assert len(keys) == 9
    for k in keys:
        assert abs(alone[k] - trained[k]) <= EVAL_ATOL
        assert abs(both[k][-1] - alone[k]) <= EVAL_ATOL, (k, both[k][-1], alone[k])
