"""Full-ranking top-K evaluation: ranking, hit lookup and DDP-ready Recall/NDCG/Precision.

Evaluation ranks *all* items for a chunk of users at a time (never a dense |U| x |I| matrix
beyond one chunk), masks the user's known items (train, or train+valid at test time) and
scores the top-K against the held-out ground truth.

Tie rule (guaranteed by :func:`rank_topk`): higher score first; equal scores are ordered by
lower item index. This makes results independent of the chunk size, the device and the
``torch.topk`` implementation, so runs are reproducible and comparable to a brute-force sort.

Off the CPU the whole pass is free of host synchronisation (no data-dependent shapes or branches):
the top-k runs on exact int64 keys (:func:`_topk_by_keys`) instead of a topk plus a repair of the
rows tied at the k-th place, and the metric states are updated with masks, not boolean indexing.
On the CPU the tie-repair path stays (faster there); both give the same lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

TOPK: tuple[int, ...] = (10, 20, 50)  # the ranking cut-offs (Recall/NDCG/Precision@K) unless a config says others

__all__ = ["rank_topk", "hits_from_topk", "RankingMetrics"]


def _stable_order(vals: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Order a small (B, k) block by (value desc, index asc) with two stable sorts."""
    idx, perm = idx.sort(dim=1, stable=True)  # index asc
    vals = vals.gather(1, perm)
    vals, perm = vals.sort(dim=1, descending=True, stable=True)  # value desc, keeps index asc
    return vals, idx.gather(1, perm)


_TIE_BLOCK_ROWS = 512


def _fix_tied_rows(sub: Tensor, vals: Tensor, idx: Tensor) -> Tensor:
    """Exact top-k item set for rows whose k-th and (k+1)-th values are equal.

    ``sub`` (T, I) is a private copy of the rows' scores (overwritten); ``vals``/``idx`` (T, k)
    are their topk block sorted by value desc. Items strictly above the boundary value are
    exactly the block's first ``n_above`` entries; the other ``k - n_above`` slots take the
    lowest-index items equal to it, found by a second topk on the key ``I - item`` (equal
    items) / 0 (others), built in place: exact in float32 since I < 2**24, and several times
    cheaper on CPU than a row cumsum over the equality mask.
    Returns (T, k) indices: above-items first, then the equal items in ascending index order.
    """
    t, k = idx.shape
    n_items = sub.shape[1]
    if n_items >= 2**24:
        raise ValueError(f"n_items={n_items} too large for exact float32 tie keys")
    thr = vals[:, k - 1 : k]  # (T, 1)
    n_above = (vals > thr).sum(dim=1, keepdim=True)  # (T, 1)
    if sub.dtype not in (torch.float32, torch.float64):  # half can't hold I - item exactly
        sub, thr = sub.float(), thr.float()
    rev = torch.arange(n_items, 0, -1, device=sub.device, dtype=torch.float32)  # (I,) I - item
    key = sub.eq_(thr).mul_(rev)  # (T, I) in place: 1.0/0.0 then I - item / 0
    eq_idx = n_items - key.topk(k, dim=1, sorted=True).values.long()  # (T, k) lowest equal items
    slot = torch.arange(k, device=sub.device).expand(t, k)  # (T, k)
    from_eq = eq_idx.gather(1, (slot - n_above).clamp(min=0))  # (T, k)
    return torch.where(slot < n_above, idx, from_eq)


def _use_keys(scores: Tensor) -> bool:
    """Whether :func:`rank_topk` ranks by exact int64 keys: off the CPU, for scores that float32
    holds exactly (the tie repair's data-dependent row selection would synchronise each chunk)."""
    return scores.device.type != "cpu" and scores.dtype in (torch.float32, torch.float16, torch.bfloat16)


_LOW32 = (1 << 32) - 1


def _topk_by_keys(scores: Tensor, k: int) -> Tensor:
    """(B, k) item indices by (score desc, item asc) from one topk over int64 keys
    ``order(score) * 2^32 + (I - 1 - item)``, where ``order`` maps float32 bits to int32 in the
    floats' order (negative floats: bits ^ 0x7FFFFFFF); -0.0 is made +0.0 first, so equal scores
    have equal high halves and the item decides. No data-dependent branch: nothing waits on the host.

    scores: (B, I) float32 (or half, widened exactly), I < 2^32."""
    n_items = scores.shape[1]
    bits = (scores.float() + 0.0).view(torch.int32).long()  # (B, I); + 0.0 turns -0.0 into +0.0
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # monotone in the float's value
    rev = torch.arange(n_items - 1, -1, -1, device=scores.device)  # (I,) I - 1 - item
    keys = bits.mul_(1 << 32).add_(rev)  # (B, I) int64, in place
    top = keys.topk(k, dim=1, sorted=True).values  # (B, k)
    return (n_items - 1) - (top & _LOW32)


def rank_topk(scores: Tensor, mask_rows: Tensor, mask_cols: Tensor, k: int) -> Tensor:
    """Top-``k`` item indices per user with known items masked out.

    Args:
        scores: (B, I) float scores for a chunk of users; **modified in place** (masked -> -inf).
        mask_rows: (M,) int64 row-in-chunk of each known (masked) item.
        mask_cols: (M,) int64 item index of each known item.
        k: list length, ``1 <= k <= I``.

    Returns:
        (B, k) int64 item indices in rank order: score desc, ties by item index asc (exact, also
        across the k-th boundary). Rows with fewer than ``k`` unmasked items are padded with
        masked (-inf) items, lowest index first; they can never be hits because ground truth and
        masks are disjoint by construction of the splits.
    """
    n_rows, n_items = scores.shape
    if not 1 <= k <= n_items:
        raise ValueError(f"k={k} must be in [1, n_items={n_items}]")
    if mask_rows.numel():
        scores[mask_rows, mask_cols] = float("-inf")
    if n_rows == 0:
        return torch.empty(0, k, dtype=torch.long, device=scores.device)
    if _use_keys(scores):
        return _topk_by_keys(scores, k)

    # One k+1 selection pass over the (B, I) block; the extra column reveals boundary ties.
    vals, idx = torch.topk(scores, min(k + 1, n_items), dim=1, largest=True, sorted=True)
    if k < n_items:
        tied = (vals[:, k - 1] == vals[:, k]).nonzero().squeeze(1)  # (T,) rows tied at boundary
        vals, idx = vals[:, :k].clone(), idx[:, :k].clone()  # (B, k)
        # Exact selection for tied rows only, in row blocks to bound the (T, I) temporaries
        # (degenerate models, e.g. constant scores, can tie on every row).
        for blk in tied.split(_TIE_BLOCK_ROWS):
            idx[blk] = _fix_tied_rows(scores.index_select(0, blk), vals[blk], idx[blk])
            vals[blk] = scores[blk.unsqueeze(1), idx[blk]]
    _, idx = _stable_order(vals, idx)
    return idx


def hits_from_topk(
    topk_idx: Tensor, gt_rows: Tensor, gt_cols: Tensor, n_items: int
) -> tuple[Tensor, Tensor]:
    """Mark which ranked items are ground truth, without a dense (B, I) matrix.

    Args:
        topk_idx: (B, k) int64 ranked item indices (from :func:`rank_topk`).
        gt_rows: (G,) int64 row-in-chunk of each ground-truth pair (pairs must be unique).
        gt_cols: (G,) int64 item of each ground-truth pair.
        n_items: number of items, used to build unique ``row * n_items + item`` keys.

    Returns:
        hits: (B, k) bool, ``hits[b, r]`` is True iff the item at rank r is relevant for row b.
        n_relevant: (B,) int64 number of ground-truth items per row.
    """
    n_rows = topk_idx.shape[0]
    # (B,) counts by index_add, not bincount (which reads its input's max on the host off the CPU)
    n_relevant = torch.zeros(n_rows, dtype=torch.long, device=topk_idx.device).index_add_(
        0, gt_rows.long(), torch.ones_like(gt_rows, dtype=torch.long))
    if gt_rows.numel() == 0:
        return torch.zeros_like(topk_idx, dtype=torch.bool), n_relevant
    gt_keys, _ = (gt_rows.long() * n_items + gt_cols.long()).sort()  # (G,)
    rows = torch.arange(n_rows, device=topk_idx.device).unsqueeze(1)  # (B, 1)
    keys = rows * n_items + topk_idx  # (B, k)
    pos = torch.searchsorted(gt_keys, keys).clamp_(max=gt_keys.numel() - 1)  # (B, k)
    return gt_keys[pos] == keys, n_relevant


def _prefix_sums(x: Tensor) -> Tensor:
    """Cumulative sums along the last dim. Off the CPU as a masked sum over a (K, K) lower
    triangle (K <= max top-K, small): CUDA's floating ``cumsum`` has no deterministic kernel and
    raises under ``torch.use_deterministic_algorithms(True)`` (``trainer.deterministic=true``).
    On the CPU, ``cumsum`` (sequential, deterministic) keeps the recorded metrics bit-identical."""
    if x.device.type == "cpu":
        return x.cumsum(dim=-1)
    k = x.shape[-1]
    lower = torch.ones(k, k, dtype=torch.bool, device=x.device).tril()  # (K, K): row r sums 0..r
    return (x.unsqueeze(-2) * lower).sum(-1)


class RankingMetrics(Metric):
    """Recall/NDCG/Precision@K averaged over users with at least one relevant item.

    States are per-K sums plus a user count, all ``dist_reduce_fx="sum"``, so DDP sync is exact
    regardless of how users are split across ranks. Definitions (as in LightGCN/KGAT code):
    Recall@K = hits@K / n_relevant; Precision@K = hits@K / K;
    NDCG@K = DCG/IDCG with DCG = sum_{r<K} hit_r / log2(r+2),
    IDCG = sum_{r<min(K, n_relevant)} 1 / log2(r+2).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    NAMES = ("recall", "ndcg", "precision")

    def __init__(
        self, topk: Sequence[int] = TOPK, prefix: str = "", collect_per_user: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.topk = tuple(sorted({int(k) for k in topk}))
        if not self.topk or self.topk[0] < 1:
            raise ValueError(f"topk must be non-empty positive ints, got {topk}")
        self.prefix = prefix
        for k in self.topk:
            for name in self.NAMES:
                zero = torch.tensor(0.0, dtype=torch.float64)
                self.add_state(f"{name}_{k}", default=zero, dist_reduce_fx="sum")
        self.add_state("n_users", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # Optional per-user values (user ids + one float64 column per metric), gathered with
        # "cat" under DDP: paired significance tests need them, the means do not.
        self.collect_per_user = collect_per_user
        if collect_per_user:
            self.add_state("user_ids", default=[], dist_reduce_fx="cat")
            self.add_state("user_values", default=[], dist_reduce_fx="cat")

    @staticmethod
    def per_user(
        hits: Tensor, n_relevant: Tensor, topk: Sequence[int] = TOPK
    ) -> dict[str, Tensor]:
        """Per-user metric values (float64, (B,) each), e.g. for paired significance tests.

        ``hits`` is (B, >= max(topk)) bool in rank order; ``n_relevant`` is (B,). Rows with
        ``n_relevant == 0`` are undefined and returned as NaN so they cannot be averaged in
        silently. Keys are ``f"{name}@{k}"`` without prefix.
        """
        max_k = max(topk)
        if hits.shape[1] < max_k:
            raise ValueError(f"hits has {hits.shape[1]} columns, need >= {max_k}")
        h = hits[:, :max_k].to(torch.float64)  # (B, maxK)
        n_rel = n_relevant.to(device=h.device, dtype=torch.float64)  # (B,)
        disc = 1.0 / torch.log2(torch.arange(max_k, device=h.device, dtype=torch.float64) + 2)
        dcg = _prefix_sums(h * disc)  # (B, maxK) DCG@(r+1)
        n_hit = _prefix_sums(h)  # (B, maxK) hits@(r+1)
        ideal = _prefix_sums(disc)  # (maxK,) IDCG with r+1 relevant items
        undefined = n_rel == 0
        denom = n_rel.clamp(min=1)
        out: dict[str, Tensor] = {}
        for k in topk:
            n_ideal = n_relevant.to(h.device).clamp(min=1, max=k) - 1  # (B,)
            vals = {
                "recall": n_hit[:, k - 1] / denom,
                "ndcg": dcg[:, k - 1] / ideal[n_ideal],
                "precision": n_hit[:, k - 1] / k,
            }
            for name in RankingMetrics.NAMES:
                out[f"{name}@{k}"] = vals[name].masked_fill(undefined, float("nan"))
        return out

    def update(  # type: ignore[override]
        self, hits: Tensor, n_relevant: Tensor, users: Tensor | None = None
    ) -> None:
        """Accumulate a chunk: hits (B, >= max K) bool in rank order, n_relevant (B,), and the
        chunk's user ids (B,) when built with ``collect_per_user=True``.

        Users without ground truth are not counted; they are masked out (zeros in the sums, id -1
        in the per-user lists), not indexed away, so nothing here waits on the host."""
        valid = n_relevant > 0  # (B,)
        values = self.per_user(hits, n_relevant, self.topk)  # NaN on rows that are not valid
        zero = torch.zeros((), dtype=torch.float64, device=hits.device)
        for k in self.topk:
            for name in self.NAMES:
                state = f"{name}_{k}"
                setattr(self, state, getattr(self, state) + torch.where(valid, values[f"{name}@{k}"], zero).sum())
        self.n_users += valid.sum()
        if self.collect_per_user:
            if users is None:
                raise ValueError("RankingMetrics(collect_per_user=True).update needs the chunk's user ids")
            self.user_ids.append(torch.where(valid, users.to(hits.device).long(), -1))
            self.user_values.append(torch.stack([values[key] for key in self.keys()], dim=1))

    def keys(self) -> list[str]:
        """Metric names without prefix, in state order: ``recall@K, ndcg@K, precision@K`` per K."""
        return [f"{name}@{k}" for k in self.topk for name in self.NAMES]

    def per_user_values(self) -> dict[str, Tensor]:
        """Per-user values of everything updated so far (synced across ranks like ``compute``):
        ``{"user": (N,) int64, "recall@20": (N,) float64, ...}``, one row per counted user,
        sorted by user id (a user seen twice, e.g. from DDP padding, is kept once)."""
        if not self.collect_per_user:
            raise ValueError("per-user values are only collected with RankingMetrics(collect_per_user=True)")
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync,
                               should_unsync=self._should_unsync):
            if isinstance(self.user_ids, Tensor) or self.user_ids:
                ids, vals = dim_zero_cat(self.user_ids), dim_zero_cat(self.user_values)
            else:
                ids = torch.empty(0, dtype=torch.long, device=self.n_users.device)
                vals = torch.empty(0, len(self.keys()), dtype=torch.float64, device=self.n_users.device)
            ids, vals = ids.clone(), vals.clone()
        counted = ids >= 0  # rows of users without ground truth carry id -1 (update)
        ids, vals = ids[counted], vals[counted]
        order = torch.argsort(ids, stable=True)
        ids, vals = ids[order], vals[order]
        first = torch.ones_like(ids, dtype=torch.bool)
        first[1:] = ids[1:] != ids[:-1]
        ids, vals = ids[first], vals[first]
        out = {"user": ids}
        out.update({key: vals[:, j] for j, key in enumerate(self.keys())})
        return out

    def compute(self) -> dict[str, Tensor]:
        """Means over counted users (NaN if no user had ground truth)."""
        n = self.n_users.to(torch.float64)
        return {
            f"{self.prefix}{name}@{k}": getattr(self, f"{name}_{k}") / n
            for k in self.topk
            for name in self.NAMES
        }
