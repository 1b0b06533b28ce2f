"""Raw item feature matrices as a model input (BM3, FREEDOM): presence check, optional
fine-tuning, projection to the embedding size.

The matrices live in the graph store (the DataModule's copy); the model only learns the
projection and, like the official BM3/FREEDOM code (``nn.Embedding.from_pretrained(feat,
freeze=False)``), an optional fine-tuning of the features themselves. Fine-tuning is held as a
zero-initialised offset ``delta`` added to the store's matrix: Adam's update depends only on the
gradient, so ``feat + delta`` follows exactly the trajectory of a trainable copy of ``feat``,
while the model's parameters stay shaped by ``meta`` alone (no data needed at construction,
checkpoints restore in any order with ``attach``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slifmr.errors import DataError


def require_features(meta: dict, model: str) -> dict[str, int]:
    """modality -> feature size from ``meta``; a :class:`DataError` when the dataset has none."""
    feats = {str(k): int(v) for k, v in (meta.get("features") or {}).items()}
    if not feats:
        raise DataError(
            f"model={model} is multimodal and needs item feature matrices, but this dataset has none "
            f"(meta['features'] is empty). Use a dataset that ships <modality>_feat.npy files "
            f"(e.g. dataset=ml-100k-kg or dataset=movietweetings-10core), check dataset.features, "
            f"or pick a model that needs only interactions (model=lightgcn, model=ngcf)."
        )
    bad = [m for m in feats if not m.isidentifier()]
    if bad:
        raise DataError(f"model={model}: modality names must be identifiers (they name parameters), got {bad}")
    return feats


class RawFeatures(nn.Module):
    """Per modality ``m``: ``proj_m(feat_m + delta_m)`` (I, d) and the presence mask (I,)."""

    def __init__(self, dims: dict[str, int], n_items: int, dim: int, finetune: bool = True,
                 xavier: bool = False):
        super().__init__()
        self.dims = dict(dims)
        self.proj = nn.ModuleDict({m: nn.Linear(f, dim) for m, f in dims.items()})
        if xavier:  # BM3's init of its projections; FREEDOM keeps nn.Linear's default
            for lin in self.proj.values():
                nn.init.xavier_normal_(lin.weight)
        self.finetune = finetune
        self.delta = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(n_items, f)) for m, f in dims.items()} if finetune else {}
        )
        self._inputs: dict[tuple, tuple[Tensor, Tensor]] = {}

    def inputs(self, graphs, m: str, device: torch.device) -> tuple[Tensor, Tensor]:
        """The store's raw (I, f_m) matrix and (I,) mask on ``device`` (moved once, then cached)."""
        key = (id(graphs), m, str(device))
        if key not in self._inputs:
            if m not in graphs.features:
                raise DataError(f"modality '{m}' was in the model's meta but the graph store has "
                                f"only {sorted(graphs.features)}")
            x = graphs.features[m].to(device=device, dtype=torch.float32)
            if x.shape[1] != self.dims[m]:
                raise DataError(f"modality '{m}': the model was built for {self.dims[m]}-d features, "
                                f"the data has {x.shape[1]}-d")
            self._inputs[key] = (x, graphs.masks[m].to(device))
        return self._inputs[key]

    def forward(self, graphs, device: torch.device) -> dict[str, tuple[Tensor, Tensor]]:
        """modality -> (projected (I, d), mask (I,) bool)."""
        out = {}
        for m, lin in self.proj.items():
            x, mask = self.inputs(graphs, m, device)
            if self.finetune:
                x = x + self.delta[m]
            out[m] = (lin(x), mask)
        return out
