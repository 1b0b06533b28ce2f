"""The graphs the models read, owned by the DataModule.

Models never build graphs; they ask the store. The store is also the single door through which
the self-loop callback feeds its item-item graph back upstream (SPEC / ARCHITECTURE).
"""

from __future__ import annotations

import numpy as np
import torch

from slifmr.data.dataset import RecDataset
from slifmr.graphs.adjacency import bipartite_adjacency, sym_normalize


class GraphStore:
    """Train-split graphs as torch sparse tensors, cached per device and per epoch."""

    def __init__(self, ds: RecDataset):
        self.n_users = ds.n_users
        self.n_items = ds.n_items
        self.train_users = torch.as_tensor(ds.train[:, 0], dtype=torch.long)
        self.train_items = torch.as_tensor(ds.train[:, 1], dtype=torch.long)
        self.epoch = 0
        self._cache: dict[tuple, torch.Tensor] = {}

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._cache.clear()

    def item_popularity(self) -> torch.Tensor:
        """(I,) train interaction counts."""
        return torch.bincount(self.train_items, minlength=self.n_items)

    def interaction_adj(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(U+I, U+I) symmetric-normalised interaction graph (Eq. 1, 7)."""
        key = ("A", str(device))
        if key not in self._cache:
            adj = bipartite_adjacency(self.train_users, self.train_items, self.n_users, self.n_items)
            self._cache[key] = sym_normalize(adj).to(device)
        return self._cache[key]
