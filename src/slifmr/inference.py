"""Use a trained run outside the Trainer: ``load_run(run_dir)`` -> model + data + graphs exactly
as they were tested, and ``recommend`` top-K lists in the dataset's original ids.

"Exactly as tested" means: the run's own composed config rebuilds the dataset (same split,
same noise), the best checkpoint's weights are loaded, and -- for SLIF-MR -- the self-loop
item-item graph that was in force when that checkpoint was validated is restored from the
checkpoint's callback state, as ``SelfLoopCallback.on_test_start`` does for ``trainer.test``.
Without that graph a checkpoint scores different lists, silently. ``LoadedRun.evaluate()``
recomputes the test metrics from the same lists ``recommend`` returns, so the two cannot drift.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from slifmr.config import upgrade_config, upgrade_hparams
from slifmr.errors import DataError

CHECKPOINT = Path("checkpoints") / "best.ckpt"


def _device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _run_config(run_dir: Path) -> DictConfig:
    """The run's composed config: record.json's resolved copy, else Hydra's saved one."""
    record = run_dir / "record.json"
    if record.is_file():
        cfg = json.loads(record.read_text()).get("config")
        if cfg:
            return upgrade_config(OmegaConf.create(cfg))
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.is_file():
        return upgrade_config(OmegaConf.load(saved))
    raise FileNotFoundError(f"{run_dir} is not a run directory: it has neither record.json nor .hydra/config.yaml")


@dataclass
class Recommendations:
    """Top-k lists: ``users`` (n,) and ``items`` (n, k) original ids (str), ``scores`` (n, k)
    float32 model scores, rank order (score desc, ties by lower internal item id)."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def rows(self) -> Iterator[tuple[str, int, str, float]]:
        """(user, rank starting at 1, item, score) rows, long format."""
        k = self.items.shape[1]
        for u, its, sc in zip(self.users, self.items, self.scores):
            for r in range(k):
                yield str(u), r + 1, str(its[r]), float(sc[r])


class LoadedRun:
    """A trained run, ready to recommend: ``model`` (eval mode), ``datamodule`` (set up, with
    the run's split), ``graphs`` (its GraphStore, self-loop graph restored), ``config``."""

    def __init__(self, run_dir: Path, config: DictConfig, model, datamodule, checkpoint: Path | None):
        self.run_dir, self.config, self.model, self.datamodule = run_dir, config, model, datamodule
        self.checkpoint = checkpoint

    @property
    def graphs(self):
        return self.datamodule.graphs

    @property
    def data(self):
        return self.datamodule.data

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device | None) -> LoadedRun:
        self.model.to(_device(device))
        self.model.on_predict_epoch_start()  # embeddings are recomputed on the new device
        return self

    # -- ids ------------------------------------------------------------------------------------
    def user_index(self, users: Sequence | None) -> np.ndarray:
        """Internal ids of original user ids (all users, in internal order, when None)."""
        ids = self.data.user_ids.astype(str)
        if users is None:
            return np.arange(len(ids))
        lookup = {u: i for i, u in enumerate(ids)}
        wanted = [str(u) for u in users]
        unknown = [u for u in wanted if u not in lookup]
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise KeyError(f"unknown user id(s) {unknown[:5]}{more}: not in dataset '{self.data.name}' "
                           f"after its filtering ({len(ids)} users, e.g. {[str(u) for u in ids[:3]]})")
        return np.asarray([lookup[u] for u in wanted], dtype=np.int64)

    # -- lists ----------------------------------------------------------------------------------
    def _known(self, exclude_seen: bool):
        from slifmr.data.sampling import csr

        d = self.data
        pairs = np.concatenate([d.train, d.valid]) if exclude_seen else np.zeros((0, 2), dtype=np.int64)
        return csr(pairs, d.n_users)

    def iter_topk(self, users: Sequence | None = None, k: int = 20, exclude_seen: bool = True,
                  batch_size: int = 2048) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """(internal users (B,), items (B, k), scores (B, k)) on the model's device, batch by
        batch: ``predict_step`` on chunks of ``batch_size`` users, never a |U| x |I| matrix."""
        from slifmr.data.sampling import gather_rows

        if not 1 <= k <= self.data.n_items:
            raise ValueError(f"k={k} must be between 1 and the number of items ({self.data.n_items})")
        index = self.user_index(users)
        known = self._known(exclude_seen)
        dev = self.device
        self.model.eval()
        self.model.on_predict_epoch_start()
        with torch.no_grad():
            for b, start in enumerate(range(0, len(index), batch_size)):
                chunk = index[start:start + batch_size]
                rows, cols = gather_rows(*known, chunk)
                batch = {"users": torch.from_numpy(chunk).to(dev), "mask_rows": torch.from_numpy(rows).to(dev),
                         "mask_cols": torch.from_numpy(cols).to(dev), "k": k}
                out = self.model.predict_step(batch, b)
                yield out["users"], out["items"], out["scores"]
        self.model.on_predict_epoch_end()

    def recommend(self, users: Sequence | None = None, k: int = 20, exclude_seen: bool = True,
                  batch_size: int = 2048) -> Recommendations:
        """Top-``k`` items for ``users`` (original ids; None = every user), in original ids.

        ``exclude_seen`` masks the user's train and validation items -- what the model learnt
        from and what the test ranking masks -- so the lists are the ones the test metrics score.
        """
        user_ids, item_ids = self.data.user_ids.astype(str), self.data.item_ids.astype(str)
        us, its, scs = [], [], []
        for u, i, s in self.iter_topk(users, k, exclude_seen, batch_size):
            us.append(u.cpu().numpy())
            its.append(i.cpu().numpy())
            scs.append(s.cpu().numpy())
        u = np.concatenate(us) if us else np.zeros(0, dtype=np.int64)
        i = np.concatenate(its) if its else np.zeros((0, k), dtype=np.int64)
        s = np.concatenate(scs) if scs else np.zeros((0, k), dtype=np.float32)
        return Recommendations(user_ids[u], item_ids[i], s.astype(np.float32))

    def evaluate(self, split: str = "test", batch_size: int = 2048) -> dict[str, float]:
        """``split``'s Recall/NDCG/Precision@K (the model's ``topk``) from ``predict_step``'s lists,
        with the protocol's masks (valid: train masked; test: train + valid masked)."""
        from slifmr.data.sampling import RankingBatches
        from slifmr.metrics.ranking import RankingMetrics, hits_from_topk

        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got '{split}'")
        d, m = self.data, self.model
        known = d.train if split == "valid" else np.concatenate([d.train, d.valid])
        batches = RankingBatches(known, getattr(d, split), d.n_users, batch_size)
        metrics = RankingMetrics(m.topk, prefix=f"{split}/").to(self.device)
        m.eval()
        m.on_predict_epoch_start()
        with torch.no_grad():
            for b in range(len(batches)):
                batch = {key: v.to(self.device) for key, v in batches[b].items()}
                out = m.predict_step({**batch, "k": m.topk[-1]}, b)
                hits, n_rel = hits_from_topk(out["items"], batch["gt_rows"], batch["gt_cols"], d.n_items)
                metrics.update(hits, n_rel)
        m.on_predict_epoch_end()
        return {key: float(v) for key, v in metrics.compute().items()}


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu",
             data_dir: str | Path | None = None) -> LoadedRun:
    """Rebuild a trained run as it was tested.

    Args:
        run_dir: the run directory (holds ``record.json`` or ``.hydra/config.yaml``, and
            ``checkpoints/best.ckpt``).
        checkpoint: another checkpoint of the same run (default: the best one).
        device: where the model and its graphs live ("auto": CUDA when available).
        data_dir: where the dataset lives now, if it moved (replaces the directory that held
            the dataset's folder in the run's config).
    """
    import hydra

    from slifmr.checkpoints import check_data, read_checkpoint, stored_fingerprint
    from slifmr.config import register_resolvers
    from slifmr.resume import CONFIG_KEY
    from slifmr.runner import instantiate_callbacks

    register_resolvers()
    run_dir = Path(run_dir)
    cfg = _run_config(run_dir)
    ds_cfg = cfg.dataset
    if data_dir is not None:
        ds_cfg = OmegaConf.merge(ds_cfg, {"path": str(Path(data_dir) / Path(str(ds_cfg.path)).name)})
    datamodule = hydra.utils.instantiate(ds_cfg, _convert_="all")
    datamodule.setup("test")

    ckpt_path = Path(checkpoint) if checkpoint is not None else run_dir / CHECKPOINT
    if ckpt_path.is_file():
        ckpt = read_checkpoint(ckpt_path)  # weights only; a broken or foreign file is a named error
        check_data(stored_fingerprint(ckpt), ckpt_path, datamodule.fingerprint)
        target = ckpt.get("slifmr_model_class") or cfg.model._target_
        stored = ckpt.get(CONFIG_KEY) or OmegaConf.to_container(cfg, resolve=True)
        model = hydra.utils.get_class(target)(**upgrade_hparams(ckpt["hyper_parameters"], stored))
        model.load_state_dict(ckpt["state_dict"])
    else:
        model = hydra.utils.instantiate(cfg.model, meta=datamodule.meta, _convert_="all")
        if any(p.requires_grad for p in model.parameters()):
            raise FileNotFoundError(f"no checkpoint at {ckpt_path}: the run did not save one (or pass checkpoint=)")
        ckpt_path, ckpt = None, None  # a model without weights (Pop) needs none
    if model.meta["n_users"] != datamodule.meta["n_users"] or model.meta["n_items"] != datamodule.meta["n_items"]:
        raise DataError(f"the checkpoint was trained on {model.meta['n_users']} users x {model.meta['n_items']} items, "
                        f"but the dataset now has {datamodule.meta['n_users']} x {datamodule.meta['n_items']}",
                        str(datamodule.path))
    if ckpt is not None:
        # the run's own callbacks put back the graphs they changed, as on_test_start does in trainer.test
        for cb in instantiate_callbacks(cfg.get("callbacks")):
            if hasattr(cb, "restore_test_graph"):
                cb.restore_test_graph(ckpt, datamodule.graphs, model)
    model.attach(datamodule.graphs)
    model.eval()
    return LoadedRun(run_dir, cfg, model, datamodule, ckpt_path).to(device)
