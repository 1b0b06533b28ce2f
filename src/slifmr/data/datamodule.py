"""LightningDataModule: reads a dataset once (cached), owns the graph store and the samplers."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from slifmr.data import cache
from slifmr.data.dataset import RecDataset
from slifmr.data.expected import compare_counts, warn_mismatch
from slifmr.data.formats import read_dataset, reader_inputs
from slifmr.data.graph_store import GraphStore
from slifmr.data.noise import NoiseConfig
from slifmr.data.pipeline import build_rec_dataset
from slifmr.data.sampling import BPRBatches, EveryBatch, RankingBatches
from slifmr.errors import DataError

log = logging.getLogger(__name__)


class RecDataModule(pl.LightningDataModule):
    """One dataset on disk -> train batches, valid/test ranking batches and graphs.

    Test interactions are only handed out by ``test_dataloader``: nothing before
    ``trainer.test`` can see them (SPEC evaluation protocol). With ``withhold_test`` (every
    tuning trial, ``slifmr.tune``) they are dropped as soon as the split is made and
    ``test_dataloader`` refuses: a search selected on validation cannot touch the test split.
    """

    def __init__(
        self,
        name: str,
        path: str,
        format: str = "kgat",
        features: Sequence[str] | None = None,
        reader_options: dict | None = None,
        kcore: int | Sequence[int] = 0,
        split: str = "random",
        ratios: Sequence[float] = (0.8, 0.1, 0.1),
        valid_ratio: float = 0.1,
        split_seed: int = 2025,
        batch_size: int = 4096,
        eval_batch_size: int = 2048,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        noise: dict | None = None,
        expected: dict | None = None,
        withhold_test: bool = False,
        source: str | None = None,
    ):
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise DataError(f"dataset.{key} must be >= 1, got {value}")
        self.name = name
        self.path = Path(path).expanduser()
        self.format = format
        self.features = None if features is None else list(features)
        self.reader_options = dict(reader_options or {})
        self.kcore = kcore if isinstance(kcore, int) else list(kcore)
        self.split = split
        self.ratios = list(ratios)
        self.valid_ratio = valid_ratio
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.noise = dict(noise or {})
        self.expected = dict(expected or {})  # known-target counts (paper Table I); mismatch = loud warning
        self.withhold_test = withhold_test
        self.source = source  # where to get the data: said when the directory is missing
        self.data: RecDataset | None = None
        self.fingerprint: dict | None = None  # what data + split this is (set by load(); saved in checkpoints)
        self.graphs: GraphStore | None = None
        self._train: BPRBatches | None = None
        self._ranking_sets: dict[tuple[str, int, int], RankingBatches] = {}

    # -- loading ---------------------------------------------------------------------------
    def _settings(self) -> dict:
        return {
            "format": self.format, "features": self.features, "reader_options": self.reader_options,
            "kcore": self.kcore, "split": self.split, "ratios": self.ratios,
            "valid_ratio": self.valid_ratio, "split_seed": self.split_seed, "version": 1,
        }

    def _build(self) -> RecDataset:
        raw = read_dataset(self.format, self.path, name=self.name, features=self.features, **self.reader_options)
        if self.features is not None:
            missing = [f for f in self.features if f not in raw.features]
            if missing:
                raise DataError(
                    f"dataset.features asks for {missing}, but {self.path} only has {sorted(raw.features)}"
                )
            raw.features = {k: raw.features[k] for k in self.features}
            raw.feature_masks = {k: raw.feature_masks[k] for k in self.features}
        return build_rec_dataset(raw, self.kcore, self.split, self.ratios, self.valid_ratio, self.split_seed)

    def _fingerprint(self, key: str) -> dict:
        """Plain (JSON-able, so checkpoints stay weights-only) description of the data and split:
        the cache key (input bytes + split settings) decides, the rest is for messages."""
        noisy = {k: v for k, v in self.noise.items() if k != "seed" and v}
        noise = {**noisy, "seed": self.noise.get("seed", 0)} if noisy else {}
        settings = {k: v for k, v in self._settings().items() if k in ("split", "split_seed", "ratios", "kcore")}
        fp = {"dataset": self.name, "path": str(self.path), "key": key, "noise": noise, **settings}
        return json.loads(json.dumps(fp, default=str))

    # Lightning saves this in every checkpoint and hands it back on resume / test
    def state_dict(self) -> dict:
        return {"fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        from slifmr.checkpoints import check_data

        path = getattr(self.trainer, "ckpt_path", None) if self.trainer is not None else None
        check_data(state.get("fingerprint"), path or "<checkpoint>", self.fingerprint)

    def load(self) -> RecDataset:
        """Read (or fetch from the cache) the filtered, split dataset; sets :attr:`fingerprint`."""
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"dataset '{self.name}': dataset.path must be a directory, but it is a file "
                            f"(set dataset.path to the directory that holds it)", self.path)
        if not self.path.is_dir():
            where = f" Get it: {self.source}." if self.source else ""
            raise DataError(f"dataset '{self.name}': directory not found: {self.path}. Point paths.data_dir "
                            f"(or SLIFMR_DATA_DIR) at the folder that holds {self.path.name}/, or dataset.path "
                            f"at the dataset folder itself.{where}")
        inputs = reader_inputs(self.format, self.path, name=self.name, features=self.features, **self.reader_options)
        key = cache.cache_key(inputs, self._settings())
        self.fingerprint = self._fingerprint(key)
        if self.cache_dir is None:
            return self._build()
        target = self.cache_dir / f"{self.name}-{key}.npz"
        if self.cache_dir.is_dir():
            cache.sweep_stale(self.cache_dir)
        if target.exists():
            try:
                return cache.load(target)
            except cache.CorruptCacheEntry as exc:
                log.warning("%s; rebuilding it", exc)
                target.unlink(missing_ok=True)
        ds = self._build()
        cache.save(ds, target)
        return ds

    def prepare_data(self) -> None:
        # Runs on one process per node under DDP: fills the cache so the other ranks read it.
        if self.cache_dir is not None:
            self.load()

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        # after the cache: noise is seeded apart from the split and from the model (noise.seed);
        # all-zero ratios return the clean dataset itself
        clean = self.load()
        warn_mismatch(self.name, str(self.path), compare_counts(clean.summary(), self.expected))
        data = NoiseConfig(**self.noise).apply(clean)
        if self.withhold_test:  # after the noise, so a trial sees exactly a normal run's train/valid
            data = dataclasses.replace(data, test=np.empty((0, 2), dtype=np.int64))
        self.data = data
        self.graphs = GraphStore(data, seed=self.seed, cache_dir=self.cache_dir)  # kNN lists cached there too
        s = self.data.summary()
        log.info("dataset %s: %s", self.name, ", ".join(f"{k}={v}" for k, v in s.items()))

    @property
    def meta(self) -> dict:
        """What a model needs to know to build its parameters (saved in its hyper-parameters)."""
        if self.data is None:
            self.setup()
        d = self.data
        return {
            "n_users": d.n_users, "n_items": d.n_items,
            "n_entities": d.n_entities, "n_relations": d.n_relations,
            "features": {k: int(v.shape[1]) for k, v in d.features.items()},
            "n_kg_relations": self.graphs.n_kg_relations,
        }

    # -- loaders ---------------------------------------------------------------------------
    def _shard(self) -> tuple[int, int]:
        """(rank, world size) of this process: the datasets shard themselves (data/sampling.py)."""
        t = self.trainer
        return (0, 1) if t is None else (int(t.global_rank), int(t.world_size))

    def _device(self) -> torch.device:
        """The model's device (where BPR batches are drawn); the CPU outside a Trainer."""
        t = self.trainer
        return torch.device("cpu") if t is None else t.strategy.root_device

    def train_dataloader(self) -> DataLoader:
        rank, world = self._shard()
        device = self._device()
        if self._train is None or (self._train.rank, self._train.world_size, self._train.device) != (rank, world,
                                                                                                     device):
            self._train = BPRBatches(self.data.train, self.data.n_items, self.batch_size, self.seed, rank, world,
                                     device=device)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self._train.set_epoch(epoch)
        self.graphs.set_epoch(epoch)
        sampler = EveryBatch(self._train)  # not Lightning's: the dataset shards itself
        # batches drawn on a GPU are a few kernel launches: no worker processes (they cannot hold CUDA tensors)
        workers = self.num_workers if device.type == "cpu" else 0
        return DataLoader(self._train, batch_size=None, sampler=sampler, num_workers=workers)

    def _ranking(self, split: str) -> DataLoader:
        """Ranking batches of one split, built once (dataloaders are reloaded every epoch)."""
        key = (split, *self._shard())
        if key not in self._ranking_sets:
            d = self.data
            known = d.train if split == "valid" else np.concatenate([d.train, d.valid])
            self._ranking_sets[key] = RankingBatches(known, getattr(d, split), d.n_users, self.eval_batch_size,
                                                     *key[1:])
        batches = self._ranking_sets[key]
        # on a GPU: pinned chunks, so Lightning's non_blocking copy does not wait for the previous
        # chunk's ranking and the next chunk is gathered on the host meanwhile
        return DataLoader(batches, batch_size=None, sampler=EveryBatch(batches), num_workers=self.num_workers,
                          pin_memory=self._device().type == "cuda")

    def val_dataloader(self) -> DataLoader:
        return self._ranking("valid")

    def test_dataloader(self) -> DataLoader:
        if self.withhold_test:
            raise RuntimeError(
                f"dataset '{self.name}': dataset.withhold_test=true (a tuning run) withholds the test split; "
                "test a tuned point with a normal run (python -m slifmr.train ... tuned=<name>)")
        return self._ranking("test")
