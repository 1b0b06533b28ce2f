"""The graphs the models read, owned by the DataModule.

Models never build graphs; they ask the store. The store is also the single door through which
the self-loop callback feeds its item-item graph back upstream (SPEC / ARCHITECTURE):
``set_item_graph`` changes what ``interaction_adj``, ``feature_graphs`` and ``kg_edges``
return from then on.

Every graph is built on the device that asks for it (the model's), from the store's inputs copied
there once (:meth:`GraphStore.inputs`), and the per-epoch pruning samples are drawn there from a
generator on that device: a training step only reads cached graphs (the model builds them before
its steps, ``prepare_graphs``), never copies one from the host. On the CPU the samples are the
same numbers as before (a CPU generator with the same seed), so CPU results are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from slifmr.data import knn_cache
from slifmr.data.dataset import RecDataset
from slifmr.graphs.adjacency import SparseOperator
from slifmr.graphs.kg import KGEdges, add_inverse, kg_structure
from slifmr.graphs.knn import knn_graph, knn_lists_to_adjacency, laplacian_normalize
from slifmr.graphs.pruning import check_prune_ratio, prune_edges
from slifmr.graphs.self_loop import check_a_block, feature_graph, interaction_graph

# Named sample streams of the per-epoch pruning: each is its own seeded sequence (the salt mixed
# into the (seed, epoch) generator), so two graphs pruned in one epoch are independent samples.
# "freedom" is FREEDOM's interaction stream, kept apart from SLIF-MR's as its recorded runs were.
STREAMS = {"interaction": 1, "kg": 2, "freedom": 3}


def check_stream(stream: str) -> None:
    """Refuse a pruning sample stream that :data:`STREAMS` does not name."""
    if stream not in STREAMS:
        raise ValueError(f"unknown pruning stream {stream!r}; known: {sorted(STREAMS)}")


class GraphStore:
    """Train-split graphs as torch sparse tensors, cached per device, re-sampled per epoch.

    Relations of the KG view: ``0..R-1`` original, ``R..2R-1`` inverse, ``2R`` = ``sim``
    (self-loop item-item edges); so models size relation tables with ``n_kg_relations``.

    The knobs of the graphs belong to the models that read them: the pruning ratio and the kNN k
    come with every call (``model.prune_ratio``, ``model.knn_k``); the store only caches.
    """

    def __init__(self, ds: RecDataset, seed: int = 0, knn_chunk: int = 1024, cache_dir: str | Path | None = None):
        self.n_users, self.n_items = ds.n_users, ds.n_items
        self.train_users = torch.as_tensor(ds.train[:, 0], dtype=torch.long)
        self.train_items = torch.as_tensor(ds.train[:, 1], dtype=torch.long)
        self.kg = None if ds.kg is None else torch.as_tensor(ds.kg, dtype=torch.long)
        self.n_entities = max(ds.n_entities, ds.n_items) if ds.kg is not None else ds.n_items
        self.n_base_relations = ds.n_relations
        self.features = {k: torch.as_tensor(v) for k, v in ds.features.items()}
        self.masks = {k: torch.as_tensor(v, dtype=torch.bool) for k, v in ds.feature_masks.items()}
        self.knn_chunk, self.seed = knn_chunk, seed
        self.cache_dir = None if cache_dir is None else Path(cache_dir)  # feature kNN lists on disk (knn_cache)
        self.epoch = 0
        self.item_graph: Tensor | None = None  # (I, I) COO raw cosine G^n from the self-loop callback, on its device
        self.a_block = "cosine"  # how G^n's values enter A and S (graphs/self_loop.py)
        self._feature_knn_raw: dict[tuple[int, str], list[Tensor]] = {}  # (k, device) -> per-modality raw S^0
        self._frozen_knn: dict[tuple, Tensor] = {}  # frozen_item_graph's CPU COO, kept across set_item_graph
        self._knn_lists: dict[tuple[str, int], tuple[Tensor, Tensor, Tensor]] = {}  # (modality, k) -> kNN search
        self._inputs: dict = {}  # device (or ("features", device)) -> the inputs copied there
        self._cache: dict[tuple, object] = {}
        self.builds: dict[str, int] = {}  # graph kind -> builds so far (what a test counts)

    @property
    def n_kg_relations(self) -> int:
        return 2 * self.n_base_relations + 1

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    # -- state changes ----------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Pruning is re-sampled per epoch (seeded by (seed, epoch): identical on every rank).
        Only the pruned graphs are dropped; the whole graphs (evaluation, S) stay cached."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._cache = {k: v for k, v in self._cache.items() if not k[-1]}

    def set_item_graph(self, graph: Tensor | None, a_block: str = "cosine") -> None:
        """The self-loop door: inject an (I, I) item-item graph (raw cosine values) into A and S,
        its values entering as ``a_block`` says (graphs/self_loop.py), and its edges into the KG."""
        self.a_block = check_a_block(a_block)
        self.item_graph = None if graph is None else graph.detach().coalesce()  # stays on its device
        self._cache.clear()

    def inputs(self, device: torch.device | str) -> dict[str, Tensor]:
        """The train interactions (``users``, ``items``) and KG triples (``kg``, (T, 3), or absent)
        on ``device``, copied there once: every graph for that device is built from these."""
        key = str(torch.device(device))
        if key not in self._inputs:
            on = {"users": self.train_users.to(device), "items": self.train_items.to(device)}
            if self.kg is not None:
                on["kg"] = self.kg.to(device)
            self._inputs[key] = on
        return self._inputs[key]

    def features_on(self, device: torch.device | str) -> dict[str, tuple[Tensor, Tensor]]:
        """modality -> (raw features (I, d_m), mask (I,) bool) on ``device``, copied there once
        (a model that reads the raw features in its steps must not copy them per step)."""
        key = ("features", str(torch.device(device)))
        if key not in self._inputs:
            self._inputs[key] = {m: (self.features[m].to(device), self.masks[m].to(device)) for m in self.features}
        return self._inputs[key]

    def _item_graph_on(self, device: torch.device | str) -> Tensor | None:
        return None if self.item_graph is None else self.item_graph.to(device)

    def _generator(self, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
        """The (seed, epoch) generator of one named sample stream (:data:`STREAMS`), on ``device``
        (CUDA draws differ from the CPU's, but are the same for the same seed on the same device)."""
        check_stream(stream)
        seed = (self.seed * 1_000_003 + self.epoch) * 7 + STREAMS[stream]
        return torch.Generator(device=torch.device(device)).manual_seed(seed)

    # -- graphs -------------------------------------------------------------------------------
    def item_popularity(self) -> Tensor:
        """(I,) train interaction counts."""
        return torch.bincount(self.train_items, minlength=self.n_items)

    @staticmethod
    def _ratio(prune: bool, ratio: float) -> float:
        """The pruning ratio in force: 0 when ``prune`` is off (evaluation), else ``ratio``."""
        return check_prune_ratio(ratio, "prune ratio") if prune else 0.0

    def _cached(self, key: tuple, build):
        """Cache per key; a key's first element names the graph kind (counted in :attr:`builds`),
        its last says whether it depends on the epoch's pruning."""
        if key not in self._cache:
            self._cache[key] = build()
            self.builds[key[0]] = self.builds.get(key[0], 0) + 1
        return self._cache[key]

    def _interaction_op(self, ratio: float, stream: str, device: torch.device | str) -> SparseOperator:
        """A on ``device``, degree-pruned at ``ratio`` (> 0) with the (seed, epoch) sample of
        ``stream``, re-normalised on the kept edges, with the self-loop graph as item-item block."""
        on = self.inputs(device)
        u, i = on["users"], on["items"]
        if ratio > 0:
            n_nodes = self.n_users + self.n_items
            keep = prune_edges(u, i + self.n_users, ratio, self._generator(stream, device), n_nodes=n_nodes)
            u, i = u[keep], i[keep]
        adj = interaction_graph(u, i, self.n_users, self.n_items, self._item_graph_on(device), self.a_block)
        # a directed self-loop block makes A asymmetric: then the backward needs the real A^T
        return SparseOperator(adj, symmetric=self.item_graph is None)

    def interaction_adj(self, device: torch.device | str = "cpu", prune: bool = True, ratio: float = 0.0,
                        stream: str = "interaction") -> SparseOperator:
        """(U+I, U+I) symmetric-normalised interaction graph (Eq. 1, 7), degree-pruned (Eq. 6) at
        the caller's ``ratio`` from the named sample ``stream`` (:data:`STREAMS`; 0 or
        ``prune=False``: the whole graph), with the self-loop graph as item-item block (Eq. 18)."""
        r = self._ratio(prune, ratio)
        if r == 0:
            return self._cached(("A", str(device), None, False), lambda: self._interaction_op(0.0, stream, device))
        check_stream(stream)  # here, not inside the cached build
        return self._cached(("A", str(device), r, stream, True), lambda: self._interaction_op(r, stream, device))

    def frozen_item_graph(self, weights: dict[str, float], k: int, weighted: bool = False,
                          device: torch.device | str = "cpu") -> SparseOperator:
        """(I, I) ``sum_m w_m D^-1/2 S^m D^-1/2``: per-modality cosine kNN over the *raw* features,
        each Laplacian-normalised, then mixed with fixed weights (FREEDOM's frozen item-item graph,
        its ``mm_image_weight`` mix). Built once and never changed: neither pruning nor the
        self-loop graph touches it. Modalities with weight 0 are skipped.

        Args:
            weights: modality -> weight; every key must be one of :attr:`modalities`.
            k: neighbours per item (the model's ``knn_k``).
            weighted: False (FREEDOM): every kNN edge is 1 before normalisation; True: cosine values.
        """
        unknown = sorted(set(weights) - set(self.modalities))
        if unknown:
            raise ValueError(f"frozen_item_graph: unknown modalities {unknown}; the dataset has {self.modalities}")
        k = int(k)
        key = (tuple(sorted((m, float(w)) for m, w in weights.items())), k, bool(weighted))
        if key not in self._frozen_knn:
            idx = [torch.zeros(2, 0, dtype=torch.long, device=device)]
            val = [torch.zeros(0, device=device)]
            for m, w in weights.items():
                if w == 0:
                    continue
                g = knn_lists_to_adjacency(*self.knn_lists(m, k, device), self.n_items, weighted=weighted)
                g = laplacian_normalize(g)
                idx.append(g.indices())
                val.append(float(w) * g.values().float())
            n = self.n_items
            # coalescing sums the modalities' values on shared edges
            self._frozen_knn[key] = torch.sparse_coo_tensor(torch.cat(idx, 1), torch.cat(val), (n, n),
                                                            check_invariants=False).coalesce()
        return self._cached(("S_frozen", str(device), key, False),
                            lambda: SparseOperator(self._frozen_knn[key].to(device)))

    def knn_lists(self, modality: str, k: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """(rows, cols, cosines) of the chunked cosine top-k over one modality's raw features,
        searched once per (modality, k), on ``device`` (the first asker's): the SLIF-MR and
        FREEDOM graphs share it. Returned on ``device``. With a ``cache_dir`` the lists are
        read from / written to disk under the features' content hash (:mod:`slifmr.data.knn_cache`)."""
        key = (modality, int(k))
        if key not in self._knn_lists:

            def search() -> tuple[Tensor, Tensor, Tensor]:
                feats, mask = self.features_on(device)[modality]
                return knn_graph(feats.float(), int(k), mask, self.knn_chunk)

            self._knn_lists[key] = knn_cache.cached_search(self.cache_dir, modality, self.features[modality],
                                                           self.masks[modality], int(k), device, search)
        return tuple(t.to(device) for t in self._knn_lists[key])

    def feature_knn_raw(self, k: int, device: torch.device | str = "cpu") -> list[Tensor]:
        """Per-modality top-``k`` kNN graphs S^0 over raw features with their cosine values (Eq. 3); frozen."""
        key = (int(k), str(device))
        if key not in self._feature_knn_raw:
            self._feature_knn_raw[key] = [knn_lists_to_adjacency(*self.knn_lists(m, k, device), self.n_items)
                                          for m in self.modalities]
        return self._feature_knn_raw[key]

    def feature_knn(self, k: int, device: torch.device | str = "cpu") -> list[Tensor]:
        """Per-modality top-``k`` kNN graphs over raw features, Laplacian-normalised (Eq. 2-4); frozen."""
        return [laplacian_normalize(g) for g in self.feature_knn_raw(k, device)]

    def feature_graphs(self, k: int, device: torch.device | str = "cpu") -> list[SparseOperator]:
        """Per-modality S^m (top-``k``): ``norm(S^0 + G^n)``, the raw sum normalised once (Eq. 4, 18)."""

        def build() -> list[SparseOperator]:
            g_n = self._item_graph_on(device)
            return [SparseOperator(feature_graph(g, g_n, self.a_block)) for g in self.feature_knn_raw(k, device)]

        return self._cached(("S", str(device), int(k), False), build)

    def kg_edges(self, device: torch.device | str = "cpu", prune: bool = True, ratio: float = 0.0) -> KGEdges:
        """(heads, tails, rel_ptr): KG edges with inverses and ``sim`` edges, sorted by (relation,
        head, tail); ``rel_ptr`` (n_kg_relations + 1,) are the CSR offsets of each relation's
        segment. The result unpacks as that 3-tuple and carries ``.structure``, the edges'
        precomputed :class:`~slifmr.graphs.kg.KGStructure` (built once per graph version).
        Degree-pruned (Eq. 6) at ``ratio`` as in :meth:`interaction_adj`. All on ``device``."""
        r = self._ratio(prune, ratio)

        def build() -> KGEdges:
            triples = self.inputs(device).get("kg")
            if triples is None:
                triples = torch.zeros(0, 3, dtype=torch.long, device=device)
            if r > 0 and len(triples):
                keep = prune_edges(triples[:, 0], triples[:, 2], r, self._generator("kg", device),
                                   n_nodes=self.n_entities)
                triples = triples[keep]
            triples = add_inverse(triples, self.n_base_relations)
            g = self._item_graph_on(device)
            if g is not None:
                rows, cols = g.indices()
                sim = torch.full_like(rows, 2 * self.n_base_relations)
                triples = torch.cat([triples, torch.stack([rows, sim, cols], 1)])
            n = self.n_entities + 1
            order = torch.argsort((triples[:, 1] * n + triples[:, 0]) * n + triples[:, 2], stable=True)
            triples = triples[order]
            counts = torch.bincount(triples[:, 1], minlength=self.n_kg_relations)
            ptr = torch.zeros(self.n_kg_relations + 1, dtype=torch.long, device=triples.device)
            ptr[1:] = torch.cumsum(counts, 0)
            heads, tails = triples[:, 0], triples[:, 2]
            return KGEdges(heads, tails, ptr, kg_structure(heads, tails, ptr, self.n_entities))

        return self._cached(("KG", str(device), r, r > 0), build)
