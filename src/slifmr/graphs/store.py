"""The contract between the graph store and its readers (models, the self-loop callback).

Models never build graphs: they ask the store the DataModule owns
(:class:`slifmr.data.graph_store.GraphStore`). This Protocol says what they may ask, so a
model depends on this contract, not on ``data/`` (the layer below the models' inputs), and a
test can hand a model any object that fulfils it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from slifmr.graphs.adjacency import SparseOperator
from slifmr.graphs.kg import KGEdges

Device = torch.device | str


@runtime_checkable
class GraphSource(Protocol):
    """Train-split graphs and the inputs they are built from, built and cached on the device that
    asks (the model's): a training step reads them, never builds or copies one.

    Pruning (Eq. 6) and kNN (Eq. 3) settings come with each call: they belong to the model.
    """

    n_users: int
    n_items: int
    n_entities: int  # items included; == n_items without a KG
    n_base_relations: int  # KG relations before inverses and ``sim``
    seed: int  # the run's seed: the per-epoch samples are drawn from (seed, epoch)
    epoch: int
    train_users: Tensor  # (E,) int64, with train_items the train interactions
    train_items: Tensor  # (E,) int64
    kg: Tensor | None  # (T, 3) int64 (head, relation, tail) triples, or None
    features: dict[str, Tensor]  # modality -> (I, d_m) raw features
    masks: dict[str, Tensor]  # modality -> (I,) bool, the items that have it

    @property
    def n_kg_relations(self) -> int: ...

    @property
    def modalities(self) -> list[str]: ...

    def item_popularity(self) -> Tensor: ...

    def interaction_adj(self, device: Device = "cpu", prune: bool = True, ratio: float = 0.0,
                        stream: str = "interaction") -> SparseOperator:
        """(U+I, U+I) normalised A, pruned at ``ratio`` from sample ``stream`` when ``prune``."""
        ...

    def kg_edges(self, device: Device = "cpu", prune: bool = True, ratio: float = 0.0) -> KGEdges: ...

    def feature_graphs(self, k: int, device: Device = "cpu") -> list[SparseOperator]: ...

    def inputs(self, device: Device) -> dict[str, Tensor]:
        """``users``, ``items`` (the train interactions) and ``kg`` (triples, when there is a KG) on
        ``device``, copied there once: graphs for that device are built from these."""
        ...

    def features_on(self, device: Device) -> dict[str, tuple[Tensor, Tensor]]:
        """modality -> (features (I, d_m), mask (I,)) on ``device``, copied there once."""
        ...

    def feature_knn_raw(self, k: int, device: Device = "cpu") -> list[Tensor]: ...

    def frozen_item_graph(self, weights: dict[str, float], k: int, weighted: bool = False,
                          device: Device = "cpu") -> SparseOperator: ...

    def set_item_graph(self, graph: Tensor | None, a_block: str = "cosine") -> None:
        """The self-loop door: G^n (I, I) enters A, S and the KG from now on."""
        ...
