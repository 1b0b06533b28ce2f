"""Vectorised BPR batches and full-ranking evaluation batches.

Each dataset item is a whole batch (use ``DataLoader(batch_size=None)``), so sampling is one
tensor op per batch and no Python loop touches users or pairs.

Under DDP the datasets shard themselves, and their loaders use :class:`EveryBatch` so Lightning
does not add its DistributedSampler (which deals whole batches round-robin and pads the last
round with repeats):

- training: every rank walks the same global batches; rank r takes the r-th contiguous slice of
  each one. ``batch_size`` is the global batch (the paper's 4096 whatever the number of GPUs) and
  the gradient all-reduce of the slices' mean losses, scaled by ``grad_scale``, equals the
  single-process gradient of the whole batch;
- evaluation: rank r ranks the r-th contiguous share of the users, in chunks, and every rank
  gets the same number of chunks (the last may be empty): no user is counted twice, none is
  left out, and no rank waits on another inside the loop.

BPR batches are drawn on the model's device (``device``): the train pairs are copied there once,
and each batch is a slice of a permutation plus one ``randint``, made by a generator on that
device. So a GPU step gets its batch without a host-to-device copy (Lightning's transfer of a
CPU batch is a pageable copy that waits for the GPU), and on the CPU the generator, its seeds and
its calls are exactly those of a CPU-only sampler: the same batches, bit for bit. A CUDA
generator draws other numbers than the CPU one for the same seed (Philox vs Mersenne Twister),
reproducibly, and the same on every rank.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, end)`` of rank's contiguous share of ``n`` rows; shares differ by at most one."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in [0, world_size={world_size})")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + int(rank < extra)


class EveryBatch(DistributedSampler):
    """Every batch index of a self-sharding dataset, in order, on every rank.

    A DistributedSampler (of one replica) only so that Lightning keeps it instead of injecting
    its own, which would shard the batches a second time and repeat some to even out ranks.
    """

    def __init__(self, dataset: Dataset):
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=False, drop_last=False)


class BPRBatches(Dataset):
    """Shuffled (user, positive, negative) batches over the train interactions of one epoch.

    Negatives are drawn uniformly over all items without rejection (SPEC engineering notes:
    about 0.04% false negatives at Amazon-Book density). The permutation and the negatives are
    seeded by (seed, epoch, batch) so a batch is reproducible whichever rank or worker draws it.
    ``device``: where the pairs live and the batches are drawn (the model's device; a loader over
    a non-CPU device must not use worker processes).
    """

    def __init__(self, train: np.ndarray, n_items: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.users = torch.as_tensor(train[:, 0], dtype=torch.long).to(self.device)  # (N,)
        self.items = torch.as_tensor(train[:, 1], dtype=torch.long).to(self.device)  # (N,)
        self.n_items = n_items
        self.batch_size = batch_size  # global: split across ranks
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        shard_bounds(0, rank, world_size)  # validates rank
        self.epoch = 0
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n_full, tail = divmod(len(self.users), self.batch_size)
        # under DDP a tail shorter than the number of ranks would leave a rank without rows
        # (a NaN mean loss): those < world_size pairs sit this epoch out (re-shuffled next one)
        return n_full + int(tail >= max(1, self.world_size))

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def _permutation(self) -> torch.Tensor:
        if self._perm_epoch != self.epoch:
            g = self._generator(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(len(self.users), generator=g, device=self.device)  # (N,)
            self._perm_epoch = self.epoch
        return self._perm

    def __getitem__(self, b: int) -> dict[str, torch.Tensor]:
        idx = self._permutation()[b * self.batch_size : (b + 1) * self.batch_size]  # (B,)
        g = self._generator((self.seed * 1_000_003 + self.epoch) * 100_003 + b)
        neg = torch.randint(0, self.n_items, (len(idx),), generator=g, device=self.device)  # (B,)
        if self.world_size == 1:
            return {"users": self.users[idx], "pos": self.items[idx], "neg": neg}
        # the same global batch (permutation and negatives) on every rank; keep this rank's slice
        start, end = shard_bounds(len(idx), self.rank, self.world_size)
        idx, neg = idx[start:end], neg[start:end]
        # DDP averages gradients over ranks: weighting each slice's mean loss by its share of the
        # batch makes the average the whole batch's mean gradient, also for unequal slices
        # a fill on the device, not a host tensor copied over
        scale = torch.full((), self.world_size * (end - start) / self.batch_rows(b), device=self.device)
        return {"users": self.users[idx], "pos": self.items[idx], "neg": neg, "grad_scale": scale}

    def batch_rows(self, b: int) -> int:
        """Rows of global batch ``b`` (all ranks together)."""
        return min(self.batch_size, len(self.users) - b * self.batch_size)


def csr(pairs: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of a (row, col) pair list; cols sorted within a row."""
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=n_rows), out=indptr[1:])
    return indptr, pairs[order, 1].astype(np.int64)


def gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (position-in-rows, col) pairs of the CSR rows ``rows``, without a Python loop."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lens = ends - starts
    local = np.repeat(np.arange(len(rows)), lens)
    offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    return local, indices[np.repeat(starts, lens) + offsets]


class RankingBatches(Dataset):
    """Chunks of evaluation users with their known items (to mask) and ground truth.

    Only users with at least one ground-truth item are evaluated (SPEC evaluation protocol).
    Under DDP (``world_size > 1``) this rank holds its contiguous share of those users; every
    rank has the same number of chunks, the last ones possibly empty (zero users count nothing).
    """

    def __init__(self, known: np.ndarray, truth: np.ndarray, n_users: int, batch_size: int,
                 rank: int = 0, world_size: int = 1):
        self.known = csr(known, n_users)
        self.truth = csr(truth, n_users)
        all_users = np.flatnonzero(np.diff(self.truth[0]) > 0)
        start, end = shard_bounds(len(all_users), rank, world_size)
        self.users = all_users[start:end]
        self.batch_size = batch_size
        largest_share = -(-len(all_users) // world_size)
        self.n_batches = -(-largest_share // batch_size)

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, b: int) -> dict[str, torch.Tensor]:
        users = self.users[b * self.batch_size : (b + 1) * self.batch_size]
        m_rows, m_cols = gather_rows(*self.known, users)
        g_rows, g_cols = gather_rows(*self.truth, users)
        t = torch.from_numpy
        return {
            "users": t(users), "mask_rows": t(m_rows), "mask_cols": t(m_cols),
            "gt_rows": t(g_rows), "gt_cols": t(g_cols),
        }
