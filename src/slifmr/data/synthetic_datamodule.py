"""The synthetic side-information family as a DataModule: ``dataset=synthetic dataset.per_user=5
dataset.side=informative|noise`` generates the data in memory (no files) and then follows the
same protocol as every on-disk dataset (k-core, seeded 80/10/10 split, noise injection, graphs)."""

from __future__ import annotations

from collections.abc import Sequence

from slifmr.data.datamodule import RecDataModule
from slifmr.data.dataset import RecDataset
from slifmr.data.pipeline import build_rec_dataset
from slifmr.data.synthetic import generate, side_info_config


class SyntheticDataModule(RecDataModule):
    """A :func:`~slifmr.data.synthetic.side_info_config` dataset; its ``name`` should say which
    member it is (the yaml builds it from ``per_user`` and ``side``) so reports keep them apart."""

    def __init__(
        self,
        name: str,
        per_user: int = 10,
        side: str = "informative",
        n_users: int = 1000,
        n_items: int = 400,
        data_seed: int = 0,
        generator: dict | None = None,
        kcore: int | Sequence[int] = 0,
        split: str = "random",
        ratios: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 2025,
        batch_size: int = 4096,
        eval_batch_size: int = 2048,
        num_workers: int = 0,
        seed: int = 0,
        noise: dict | None = None,
    ):
        super().__init__(name=name, path=".", format="synthetic", kcore=kcore, split=split, ratios=ratios,
                         split_seed=split_seed, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, seed=seed, cache_dir=None, noise=noise)
        # fail on a bad member before anything trains (the generator is cheap: it runs in load())
        self.config = side_info_config(int(per_user), side, int(n_users), int(n_items), int(data_seed),
                                       **dict(generator or {}))

    def load(self) -> RecDataset:
        """Generate (deterministic in the config: nothing to cache), then filter and split."""
        raw = generate(self.config, name=self.name)
        return build_rec_dataset(raw, self.kcore, self.split, self.ratios, self.valid_ratio, self.split_seed)
