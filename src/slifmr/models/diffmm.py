"""DiffMM (Jiang et al., "DiffMM: Multi-Modal Diffusion Model for Recommendation", ACM MM 2024).

Follows the paper and the official release (github.com/HKUDS/DiffMM: ``Model.py``, ``Main.py``,
``Params.py``); our own implementation.

Speed (``OMP_NUM_THREADS=1 python benchmarks/models_speed.py --threads 1 --steps 3 --models lightgcn,tmfun,diffmm,diffkg``, Amazon-Book scale, one measurement on the shared 2-core VM at load ~20, so
only ratios mean anything): 69.1 s/step, 14,890 s/epoch of which 3,698 s is the per-epoch
regeneration, **42.8x LightGCN** (2.15 s/step). Measured reason, above the 10x budget: a profile of
the step on ``ml-100k-kg-tiny`` puts ~40 % in the |I|-wide denoiser (|I| -> 1000 -> |I| per modality
and per row, the release's ``dims``) and ~30 % in the release's contrast over *all* users and items
(``contrastLoss``: every user / item a negative, as KGCL's 32x); the regeneration walks every user
row through ``steps`` reverse steps once per epoch. A cheaper in-batch contrast (as KGCL's
``cl_negatives=batch``) is the obvious lever and is not built yet.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.adjacency import SparseOperator
from slifmr.graphs.generated import RowMatrix, drop_entries, normalized_bipartite_with_self_loops, topk_edges
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.encoders.diffusion import (Denoiser, DiffusionSchedule, diffusion_loss, epoch_row_chunks,
                                              p_sample)
from slifmr.models.encoders.raw_features import require_features
from slifmr.models.kgcl import info_nce
from slifmr.models.losses import bpr_loss

TRANSFORMS = ("matrix", "linear")
CL_MODES = ("modal_pairs", "main_vs_modal")


def lightgcn_sum(adj, ego: Tensor, n_layers: int) -> Tensor:
    """``sum_{l=0..L} A^l ego`` (the releases' ``sum(embedsLst)``: a sum, not LightGCN's mean)."""
    acc, x = ego, ego
    for _ in range(n_layers):
        x = adj @ x
        acc = acc + x
    return acc


def modality_graph_from_topk(users: Tensor, items: Tensor, n_users: int, n_items: int, keep_rate: float):
    """The release's ``buildUIMatrix`` + ``edgeDropper`` of one modality: the user -> top-k item
    edges as a binary bipartite graph with self-loops, symmetric-normalised, then entry dropout."""
    adj = normalized_bipartite_with_self_loops(users, items, n_users, n_items)
    return drop_entries(adj, keep_rate)


class DiffMM(RecModel):
    """DiffMM: per modality ``m`` a denoiser learns to regenerate each user's item-interaction row
    (Gaussian diffusion, :mod:`slifmr.models.encoders.diffusion`) guided by the modality; each
    epoch the denoised rows give a modality-aware user-item graph ``G_m`` (top ``rebuild_k`` items
    per user, plus self-loops, normalised, entry dropout ``keep_rate``). The recommender
    (official ``forward_MM``) over the interaction graph ``A`` (with self-loops):

        f_m   = LeakyReLU(X_m W_m)  ('matrix') or  X_m W_m + b  ('linear')          (I, d)
        e_m   = A [U; norm(f_m)] + A [(A [U; norm(f_m)])_users; I]  + ris_adj_lambda G_m [U; I]
        e     = sum_m softmax(w)_m e_m
        out   = sum_{l=0..L} A^l e + ris_lambda * norm(e)

    Cross-modal contrast (``forward_cl_MM``): view ``m`` = ``sum_l A^l G_m [U; norm(f_m)]``;
    InfoNCE (temperature ``temp``, every user / item as a negative, official ``contrastLoss``)
    over the batch users and positive items, between every pair of modality views
    (``cl_mode='modal_pairs'``, ``--cl_method 0``) or between the main output and each view
    (``'main_vs_modal'``, ``--cl_method 1``). Loss per step:

        BPR + reg (||U||^2 + ||I||^2) + ssl_reg * CL
        + sum_m [ mean_u w_t ||x_u - x̂_u||^2 / |I| + e_loss * mean_u ||x̂_u f_m - x_u I||^2 / d ]

    where ``x_u`` is the user's binary train row and ``x̂_u`` the denoiser's prediction (SNR weight
    ``w_t``, the release's ``training_losses``; ``f_m`` and ``I`` are detached there).

    Defaults (official ``Params.py``): ``embedding_dim`` 64 (``latdim``), ``n_layers`` 1
    (``gnn_layer``), ``reg`` 1e-5, ``ssl_reg`` 1e-2, ``temp`` 0.5, ``keep_rate`` 0.5 (``keepRate``),
    ``denoiser_dims`` [1000] (``dims``), ``time_emb_dim`` 10 (``d_emb_size``), ``denoiser_norm`` False
    (``norm``), ``steps`` 5, ``noise_scale`` 0.1, ``noise_min`` 1e-4, ``noise_max`` 0.02,
    ``sampling_steps`` 0, ``sampling_noise`` False, ``rebuild_k`` 5, ``e_loss`` 0.1, ``ris_lambda`` 0.5,
    ``ris_adj_lambda`` 0.2, ``feature_transform`` 'matrix' (``trans 0``), ``cl_mode`` 'modal_pairs'
    (``cl_method 0``), ``lr`` 1e-3; the denoiser's 0.5 input dropout and init are the release's
    ``Denoise``; modality weights start equal (0.5, 0.5 in the release) and go through a softmax.

    Deviations (ours): (1) the release trains the denoisers on every user once per epoch *before*
    the BPR steps with their own Adam (same lr); here each training step also takes one diffusion
    step on the next chunk of a per-epoch user permutation (every user once per epoch, chunks of
    about |U| / steps-per-epoch users), and the modality graphs are rebuilt at the *start* of the
    next epoch (one epoch later than the release; the first epoch uses the untrained denoisers'
    graphs). The denoiser parameters see only the diffusion loss and the recommender only its own
    (features and embeddings are detached in the diffusion loss), so one Adam over both equals
    the release's separate optimisers. (2) Any number of modalities (the release: image + text,
    + audio on TikTok): the contrast runs over every pair. (3) Graphs are rebuilt from top-k
    indices in user chunks of ``rebuild_chunk`` rows, never as a dense |U| x |I| matrix.

    Cost: the denoiser maps |I| -> 1000 -> |I| per modality (2 x 25k x 1000 weights at
    Amazon-Book scale) and the rebuild runs it ``steps`` times over every user each epoch; with
    the full-denominator contrast this is what makes an epoch far dearer than LightGCN's (see
    benchmarks/README.md for the measured ratio).
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        n_layers: int = 1,
        reg: float = 1e-5,
        ssl_reg: float = 1e-2,
        temp: float = 0.5,
        keep_rate: float = 0.5,
        denoiser_dims: tuple[int, ...] = (1000,),
        time_emb_dim: int = 10,
        denoiser_norm: bool = False,
        steps: int = 5,
        noise_scale: float = 0.1,
        noise_min: float = 1e-4,
        noise_max: float = 0.02,
        sampling_steps: int = 0,
        sampling_noise: bool = False,
        rebuild_k: int = 5,
        rebuild_chunk: int = 1024,
        e_loss: float = 0.1,
        ris_lambda: float = 0.5,
        ris_adj_lambda: float = 0.2,
        feature_transform: str = "matrix",
        cl_mode: str = "modal_pairs",
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        dims = require_features(meta, "diffmm")
        if feature_transform not in TRANSFORMS:
            raise ValueError(f"feature_transform must be one of {TRANSFORMS}, got '{feature_transform}'")
        if cl_mode not in CL_MODES:
            raise ValueError(f"cl_mode must be one of {CL_MODES}, got '{cl_mode}'")
        if cl_mode == "modal_pairs" and len(dims) < 2:
            raise DataError(f"model=diffmm with cl_mode=modal_pairs contrasts pairs of modalities, but the "
                            f"dataset has only {sorted(dims)}; use model.cl_mode=main_vs_modal")
        if not 0 <= sampling_steps <= steps:
            raise ValueError(f"sampling_steps must lie in [0, steps={steps}], got {sampling_steps}")
        if not 1 <= rebuild_k <= self.n_items:
            raise ValueError(f"rebuild_k must lie in [1, n_items={self.n_items}], got {rebuild_k}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must lie in (0, 1], got {keep_rate}")
        self.modalities = list(dims)
        self.n_layers, self.reg, self.ssl_reg, self.temp = n_layers, reg, ssl_reg, temp
        self.keep_rate, self.rebuild_k, self.rebuild_chunk = keep_rate, rebuild_k, rebuild_chunk
        self.sampling_steps, self.sampling_noise = sampling_steps, sampling_noise
        self.e_loss, self.ris_lambda, self.ris_adj_lambda = e_loss, ris_lambda, ris_adj_lambda
        self.feature_transform, self.cl_mode = feature_transform, cl_mode
        d = embedding_dim
        self.init_id_embeddings(d)
        if feature_transform == "matrix":
            self.trans = nn.ParameterDict({m: nn.Parameter(nn.init.xavier_uniform_(torch.empty(f, d)))
                                           for m, f in dims.items()})
        else:
            self.trans = nn.ModuleDict({m: nn.Linear(f, d) for m, f in dims.items()})
        self.modal_weight = nn.Parameter(torch.full((len(dims),), 1.0 / len(dims)))
        self.schedule = DiffusionSchedule(steps, noise_scale, noise_min, noise_max)
        self.denoisers = nn.ModuleDict({m: Denoiser(self.n_items, denoiser_dims, time_emb_dim, denoiser_norm)
                                        for m in dims})
        self._state: dict | None = None  # graphs and inputs on the model's device
        self._modal_graphs: dict[str, SparseOperator] | None = None
        self._chunks: list[Tensor] = []
        self._step = 0

    # -- inputs and graphs ------------------------------------------------------------------
    def state(self) -> dict:
        """The interaction graph A (+ self-loops), the users' rows and the raw features, on device."""
        if self._state is None or self._state["store"] is not self.graphs or self._state["device"] != self.device:
            g, dev = self.graphs, self.device
            missing = [m for m in self.modalities if m not in g.features]
            if missing:
                raise DataError(f"model=diffmm was built for modalities {self.modalities}, but the graph store "
                                f"has no {missing} (it has {sorted(g.features)})")
            adj = normalized_bipartite_with_self_loops(g.train_users, g.train_items, self.n_users, self.n_items)
            self._state = {
                "store": g, "device": dev,
                "adj": SparseOperator(adj, symmetric=True).to(dev),
                "rows": RowMatrix(g.train_users, g.train_items, self.n_users, self.n_items).to(dev),
                "feats": {m: g.features[m].to(device=dev, dtype=torch.float32) for m in self.modalities},
            }
            self._modal_graphs = None
        return self._state

    def modal_features(self) -> dict[str, Tensor]:
        """modality -> (I, d) transformed features ``f_m``."""
        feats = self.state()["feats"]
        if self.feature_transform == "matrix":
            return {m: F.leaky_relu(feats[m] @ self.trans[m], 0.2) for m in self.modalities}
        return {m: self.trans[m](feats[m]) for m in self.modalities}

    @property
    def n_generated_rows(self) -> int:
        """Rows the denoisers regenerate each epoch (every user)."""
        return self.n_users

    @torch.no_grad()
    def regenerate(self, n_rows: int | None = None) -> None:
        """Regenerate every user's row with each modality's denoiser and rebuild ``G_m``
        (``n_rows``: only the first rows, for timing a prefix; None: all)."""
        st = self.state()
        graphs = {}
        for m in self.modalities:
            den = self.denoisers[m]

            def generate(users: Tensor, den=den) -> Tensor:
                return p_sample(den, self.schedule, st["rows"].dense(users), self.sampling_steps,
                                self.sampling_noise)

            users, items = topk_edges(generate, self.n_users if n_rows is None else min(n_rows, self.n_users),
                                      self.rebuild_k, self.rebuild_chunk, self.device)
            adj = modality_graph_from_topk(users, items, self.n_users, self.n_items, self.keep_rate)
            graphs[m] = SparseOperator(adj)  # entry dropout breaks the symmetry
        self._modal_graphs = graphs

    def modal_graphs(self) -> dict[str, SparseOperator]:
        self.state()
        if self._modal_graphs is None:  # evaluation before any training epoch, or after a reload
            self.regenerate()
        return self._modal_graphs

    def on_train_epoch_start(self) -> None:
        self.regenerate()
        self._chunks = epoch_row_chunks(self.n_users, self.batches_per_epoch(), self.device)
        self._step = 0


    # -- model -------------------------------------------------------------------------------
    def forward(self, feats: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(users (U, d), items (I, d)): the official ``forward_MM``; ``feats``: :meth:`modal_features`."""
        adj, graphs = self.state()["adj"], self.modal_graphs()
        feats = self.modal_features() if feats is None else feats
        u, i = self.user_emb.weight, self.item_emb.weight
        ego = torch.cat([u, i])  # (U+I, d)
        weight = torch.softmax(self.modal_weight, 0)
        modal = 0.0
        for j, (m, f) in enumerate(feats.items()):
            e = adj @ torch.cat([u, F.normalize(f, dim=1)])
            e = e + adj @ torch.cat([e[: self.n_users], i])
            e = e + self.ris_adj_lambda * (graphs[m] @ ego)
            modal = modal + weight[j] * e
        out = lightgcn_sum(adj, modal, self.n_layers) + self.ris_lambda * F.normalize(modal, dim=1)
        return out[: self.n_users], out[self.n_users :]

    def modal_views(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """modality -> (U+I, d) contrastive view (official ``forward_cl_MM``)."""
        adj, graphs = self.state()["adj"], self.modal_graphs()
        u = self.user_emb.weight
        return {m: lightgcn_sum(adj, graphs[m] @ torch.cat([u, F.normalize(f, dim=1)]), self.n_layers)
                for m, f in feats.items()}

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return self.forward()

    def contrast(self, main: Tensor, views: dict[str, Tensor], users: Tensor, items: Tensor) -> Tensor:
        """Sum of user + item InfoNCE over the view pairs of ``cl_mode``. main, views: (U+I, d)."""
        n_u = self.n_users
        pairs = ([(views[a], views[b]) for j, a in enumerate(self.modalities) for b in self.modalities[j + 1:]]
                 if self.cl_mode == "modal_pairs" else [(main, v) for v in views.values()])
        total = torch.zeros((), device=main.device)
        for a, b in pairs:
            total = total + info_nce(rows(a, users), rows(b, users), b[:n_u], self.temp) \
                + info_nce(rows(a[n_u:], items), rows(b[n_u:], items), b[n_u:], self.temp)
        return total

    def diffusion_step_loss(self, feats: dict[str, Tensor]) -> Tensor:
        """The release's denoiser loss on this step's chunk of users, summed over modalities."""
        if not self._chunks:  # outside a Trainer epoch: a random chunk of rebuild_chunk users
            self._chunks = [torch.randperm(self.n_users, device=self.device)[: self.rebuild_chunk]]
        users = self._chunks[self._step % len(self._chunks)]
        self._step += 1
        x0 = self.state()["rows"].dense(users)  # (B, I)
        target = x0 @ self.item_emb.weight.detach()  # (B, d)
        total = torch.zeros((), device=self.device)
        for m in self.modalities:
            weighted_mse, x0_hat = diffusion_loss(self.denoisers[m], self.schedule, x0)
            gc = (x0_hat @ feats[m].detach() - target).pow(2).mean(dim=1)
            total = total + weighted_mse.mean() + self.e_loss * gc.mean()
        return total

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]
        feats = self.modal_features()
        u_all, i_all = self.forward(feats)
        u = rows(u_all, users)
        bpr = bpr_loss((u * rows(i_all, pos)).sum(-1), (u * rows(i_all, neg)).sum(-1))
        reg = self.user_emb.weight.pow(2).sum() + self.item_emb.weight.pow(2).sum()
        main = torch.cat([u_all, i_all])
        cl = self.contrast(main, self.modal_views(feats), users, pos)
        diff = self.diffusion_step_loss(feats)
        total = bpr + self.reg * reg + self.ssl_reg * cl + diff
        return {"loss": total, "bpr": bpr, "reg": reg, "cl": cl, "diffusion": diff}
