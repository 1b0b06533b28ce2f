"""Synthetic datasets with planted structure, for tests and benchmarks.

Real datasets cannot tell a test whether a model *should* have learned something. Here every
signal is planted from known latent factors, so tests can check that it is really there (and
models can be checked for recovering it):

* users ``P`` and items ``Q`` have Gaussian latent factors; item popularity is Zipf-like;
* each user's items are drawn without replacement with probability proportional to
  ``exp(P_u . Q_i / (sqrt(k) * temperature) + log popularity_i)``;
* each item links in the KG to attribute entities drawn the same way from ``Q_i`` (so items
  sharing attributes have similar factors), plus ``kg_noise`` random triples;
* each modality's features are ``Q @ W + noise``, with whole rows missing at a given rate;
* ``side="noise"`` plants the KG and the features from *independent* item factors instead of
  ``Q``: the same sizes, degree profile and cluster structure, but no information about the
  interactions (the control arm of the side-information study, :func:`side_info_config`).

It scales to the paper's Amazon-Book sizes (see :func:`amazon_book_scale`): the users x items
score matrix is never materialised, only chunks of ``_CHUNK_ELEMS`` scores at a time.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, RawDataset
from slifmr.errors import DataError

# Scores held at once while sampling (float32: 64 MB at 2**24)
_CHUNK_ELEMS = 2**24
# Scores per CDF block (two-level CDF, see _cdf_draws)
_BLOCK = 64
# Inverse-CDF rounds before the exact Gumbel-top-k fallback takes the few rows still short
_CDF_ROUNDS = 3
# Worker threads for score chunks (each holds one _CHUNK_ELEMS buffer)
_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
# Candidate users per item when giving every item one interaction (keeps that pass on-signal)
_ITEM_CANDIDATES = 32


@dataclass
class SyntheticConfig:
    """Sizes and knobs of a synthetic dataset; defaults are a small, fast dataset."""

    n_users: int = 2000
    n_items: int = 1000
    n_interactions: int = 40000
    latent_dim: int = 16
    popularity_skew: float = 1.0  # Zipf exponent of item popularity (0 = uniform)
    activity_skew: float = 0.5  # Zipf exponent of user activity (0 = uniform)
    temperature: float = 0.5  # lower = interactions/KG follow the latent factors more closely
    n_attributes: int = 200  # non-item KG entities (attribute values)
    n_relations: int = 10
    triples_per_item: float = 20.0  # mean KG triples per item (item -> attribute entity)
    feature_dims: dict[str, int] = field(default_factory=lambda: {"visual": 64, "text": 32})
    feature_noise: float = 0.5
    missing_rate: dict[str, float] = field(default_factory=dict)  # modality -> fraction of rows absent
    kg_noise: float = 0.1  # fraction of random (non-planted) triples
    given_split: bool = False  # set RawDataset.split to a per-user 80/20 train/test split
    side: str = "informative"  # informative: KG and features from Q | noise: from independent item factors
    seed: int = 0


@dataclass
class Latents:
    """The planted ground truth: what tests compare the generated data against."""

    P: np.ndarray  # (n_users, k) float32 user factors
    Q: np.ndarray  # (n_items, k) float32 item factors
    log_popularity: np.ndarray  # (n_items,) float32
    log_activity: np.ndarray  # (n_users,) float64 unnormalised log user activity


def amazon_book_scale(seed: int = 0, **overrides: object) -> SyntheticConfig:
    """The paper's Amazon-Book sizes: 70,679 users, 24,915 items, 846k interactions,
    ~690k triples over ~29.7k entities and 39 relations, 4096-d visual and 768-d text."""
    n_items = 24_915
    cfg = SyntheticConfig(
        n_users=70_679,
        n_items=n_items,
        n_interactions=846_000,
        n_attributes=29_700 - n_items,
        n_relations=39,
        triples_per_item=690_000 / n_items,
        feature_dims={"visual": 4096, "text": 768},
        seed=seed,
    )
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise DataError(f"amazon_book_scale: unknown SyntheticConfig field '{key}'")
        setattr(cfg, key, value)
    return cfg


SIDES = ("informative", "noise")


def side_info_config(per_user: int, side: str = "informative", n_users: int = 1000, n_items: int = 400,
                     seed: int = 0, **overrides: object) -> SyntheticConfig:
    """One member of the side-information family: ``per_user`` interactions per user on average
    (every user's count drawn around it: activity_skew 0), KG and features informative or noise.
    The planted factors, KG and features do not depend on ``per_user`` (their streams are apart),
    so the family differs only in how many interactions each user has."""
    if side not in SIDES:
        raise DataError(f"synthetic: side must be one of {SIDES}, got '{side}'")
    if per_user < 3:
        raise DataError(f"synthetic: per_user must be >= 3 (one train, one valid, one test), got {per_user}")
    cfg = SyntheticConfig(n_users=n_users, n_items=n_items, n_interactions=int(per_user) * n_users,
                          activity_skew=0.0, side=side, seed=seed)
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise DataError(f"side_info_config: unknown SyntheticConfig field '{key}'")
        setattr(cfg, key, value)
    return cfg


def side_factors(cfg: SyntheticConfig, lat: Latents) -> np.ndarray:
    """(n_items, k) the item factors the KG and features are planted from: ``Q`` itself, or, for
    ``side="noise"``, independent factors of the same distribution (own stream)."""
    if cfg.side == "informative":
        return lat.Q
    return _rng(cfg, 5).standard_normal(lat.Q.shape, dtype=np.float32)


def _rng(cfg: SyntheticConfig, stream: int, sub: int = 0) -> np.random.Generator:
    """Independent stream per component, so e.g. changing feature dims keeps the interactions."""
    return np.random.default_rng([cfg.seed, stream, sub])


def _zipf_log_weights(rng: np.random.Generator, n: int, skew: float) -> np.ndarray:
    """log of rank^-skew over a random permutation of ranks (which entity is popular is random)."""
    return -skew * np.log(rng.permutation(n) + 1.0)


def latent_factors(cfg: SyntheticConfig) -> Latents:
    """The planted factors of ``cfg`` (deterministic in ``cfg.seed``; cheap to recompute)."""
    rng = _rng(cfg, 0)
    k = cfg.latent_dim
    P = rng.standard_normal((cfg.n_users, k), dtype=np.float32)
    Q = rng.standard_normal((cfg.n_items, k), dtype=np.float32)
    log_pop = _zipf_log_weights(rng, cfg.n_items, cfg.popularity_skew).astype(np.float32)
    log_act = _zipf_log_weights(rng, cfg.n_users, cfg.activity_skew)
    return Latents(P, Q, log_pop, log_act)


def _sample_distinct(
    rng: np.random.Generator,
    A: np.ndarray,
    B: np.ndarray,
    bias: np.ndarray,
    counts: np.ndarray,
    exclude: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row r of ``A`` draw ``counts[r]`` distinct columns not in ``exclude`` (keys
    ``r * n_cols + c``), without replacement, with probability proportional to
    ``exp(A[r] @ B + bias)``. Returns (rows, cols).

    Drawing with replacement and keeping the first new columns in draw order is exactly
    successive sampling without replacement, so most rows are served by cheap inverse-CDF draws
    (no random number per score); rows still short after a few rounds finish with an exact
    Gumbel-top-k. Scores exist _CHUNK_ELEMS at a time, never rows x cols.
    Needs ``counts[r] <= n_cols - |exclude in row r|``.
    """
    k, n_cols = B.shape
    n_pad = -(-n_cols // _BLOCK) * _BLOCK
    # bias folded into the matmul as a column of ones; padding columns get exp(-inf) = 0
    Bp = np.zeros((k + 1, n_pad), dtype=np.float32)
    Bp[:k, :n_cols], Bp[k, :n_cols], Bp[k, n_cols:] = B, bias, -np.inf
    A1 = np.concatenate([A, np.ones((len(A), 1), A.dtype)], axis=1).astype(np.float32)
    need = counts.astype(np.int64).copy()
    chosen = _sorted_unique(exclude.astype(np.int64))
    new_keys: list[np.ndarray] = []
    chunk = max(1, _CHUNK_ELEMS // n_pad)
    seed = int(rng.integers(2**63))
    local = threading.local()  # one reused score buffer per thread: no page faults per chunk

    def work(rnd: int, c: int, rows: np.ndarray) -> np.ndarray:
        # own generator per (round, chunk): results do not depend on thread scheduling
        crng = np.random.default_rng([seed, rnd, c])
        if getattr(local, "buf", None) is None:
            local.buf = np.empty(n_pad * min(chunk, len(A)), dtype=np.float32)
        scores = local.buf[: n_pad * len(rows)].reshape(len(rows), n_pad)
        np.matmul(A1[rows], Bp, out=scores)
        if rnd == _CDF_ROUNDS:
            return _gumbel_top(crng, scores, rows, need[rows], chosen, n_cols)
        draws = (need[rows] * 2.0 ** (rnd + 1) + 4).astype(np.int64)
        return rows.repeat(draws) * n_cols + _cdf_draws(crng, scores, draws)

    with ThreadPoolExecutor(_THREADS) as pool:  # numpy releases the GIL in the big array ops
        for rnd in range(_CDF_ROUNDS + 1):
            active = np.flatnonzero(need > 0)
            if len(active) == 0:
                break
            chunks = [active[s : s + chunk] for s in range(0, len(active), chunk)]
            keys = np.concatenate(list(pool.map(work, [rnd] * len(chunks), range(len(chunks)), chunks)))
            keys = _first_new(keys, chosen, need, n_cols)
            need -= np.bincount(keys // n_cols, minlength=len(need))
            new_keys.append(keys)
            chosen = np.sort(np.concatenate([chosen, keys]))
    if need.any():  # cannot happen when counts respect the capacity
        raise DataError("synthetic sampler: a row asked for more distinct columns than exist")
    out = np.concatenate(new_keys) if new_keys else np.zeros(0, np.int64)
    return out // n_cols, out % n_cols


def _first_new(keys: np.ndarray, chosen: np.ndarray, need: np.ndarray, n_cols: int) -> np.ndarray:
    """Of row-grouped draws (keys, in draw order within a row), the first ``need[row]`` distinct
    ones not already chosen: the order matters, it is what makes the result without-replacement."""
    keys = keys[~_isin_sorted(keys, chosen)]
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    keys = keys[np.sort(order[np.r_[True, sk[1:] != sk[:-1]]])]  # first draw of each pair
    rows = keys // n_cols
    rank = np.arange(len(keys)) - np.searchsorted(rows, rows, side="left")
    return keys[rank < need[rows]]


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """Sort-based unique (numpy 2's hash-based np.unique is slow on large int64 arrays)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def _isin_sorted(keys: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    if len(sorted_ref) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ref, keys), len(sorted_ref) - 1)
    return sorted_ref[pos] == keys


def _cdf_draws(rng: np.random.Generator, scores: np.ndarray, n_draws: np.ndarray) -> np.ndarray:
    """``n_draws[j]`` columns drawn with replacement from row j's softmax of ``scores``
    (overwritten), row by row in draw order.

    numpy's cumsum along 25k-long rows is slow, so the CDF is two-level: cumulated sums of
    _BLOCK-wide blocks locate the block (one flat float64 searchsorted for all rows, row j's
    CDF shifted to [j, j+1]), then a cumsum inside that one block per draw locates the column.
    """
    b, n_pad = scores.shape
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    blocks = scores.reshape(b, -1, _BLOCK)
    total = blocks.sum(axis=2).astype(np.float64)  # (b, n_blocks)
    cum = np.cumsum(total, axis=1)
    total = cum[:, -1].copy()
    cum /= total[:, None]
    cum += np.arange(b, dtype=np.float64)[:, None]
    local = np.repeat(np.arange(b), n_draws)
    u = local + rng.random(len(local))
    flat = np.searchsorted(cum.ravel(), u, side="right")
    blk = np.minimum(flat - local * cum.shape[1], cum.shape[1] - 1)
    below = np.where(blk > 0, cum.ravel()[np.maximum(flat - 1, 0)] - local, 0.0)
    resid = ((u - local - below) * total[local]).astype(np.float32)  # mass to cover in the block
    vals = blocks[local, blk]  # (draws, _BLOCK)
    pos = (np.cumsum(vals, axis=1) <= resid[:, None]).sum(axis=1)
    last = _BLOCK - 1 - np.argmax(vals[:, ::-1] > 0, axis=1)  # rounding never picks a zero
    return blk * _BLOCK + np.minimum(pos, last)


def _gumbel_top(
    rng: np.random.Generator,
    scores: np.ndarray,
    rows: np.ndarray,
    need: np.ndarray,
    chosen: np.ndarray,
    n_cols: int,
) -> np.ndarray:
    """Exact sampling without replacement (Gumbel-top-k), already chosen columns masked out."""
    gumbel = rng.standard_exponential(size=scores.shape, dtype=np.float32)  # Gumbel = -log(Exp(1))
    np.maximum(gumbel, np.finfo(np.float32).tiny, out=gumbel)  # float32 draws can be exactly 0
    scores -= np.log(gumbel, out=gumbel)
    del gumbel
    lo, hi = np.searchsorted(chosen, [rows[0] * n_cols, (rows[-1] + 1) * n_cols])
    taken = chosen[lo:hi]
    local = np.searchsorted(rows, taken // n_cols)
    ok = rows[np.minimum(local, len(rows) - 1)] == taken // n_cols
    scores[local[ok], taken[ok] % n_cols] = -np.inf
    kmax = int(need.max())
    top = np.argpartition(-scores, kmax - 1, axis=1)[:, :kmax]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    keep = np.arange(kmax)[None, :] < need[:, None]
    return (rows[:, None] * n_cols + top)[keep]


def _user_counts(
    rng: np.random.Generator, cfg: SyntheticConfig, lat: Latents, forced: np.ndarray
) -> np.ndarray:
    """Interactions per user beyond the forced ones: a minimum of 3 each (fewer if the total does
    not allow it), the rest spread by skewed activity and capped at the items left to the user."""
    n_users, n_items, n = cfg.n_users, cfg.n_items, cfg.n_interactions
    for m in (3, 2, 1):
        base = np.maximum(0, min(m, n_items) - forced)
        if n_items + base.sum() <= n:
            break
    cap = n_items - forced - base
    w = np.exp(lat.log_activity - lat.log_activity.max())
    extra = np.zeros(n_users, dtype=np.int64)
    left = n - n_items - int(base.sum())
    while left > 0:  # each round fills some users to capacity, so this ends
        room = cap - extra
        p = w * (room > 0)
        extra += rng.multinomial(left, p / p.sum())
        over = np.maximum(0, extra - cap)
        extra -= over
        left = int(over.sum())
    return base + extra


def _interactions(cfg: SyntheticConfig, lat: Latents) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(cfg, 1)
    n_users, n_items = cfg.n_users, cfg.n_items
    scale = np.float32(1.0 / (np.sqrt(cfg.latent_dim) * cfg.temperature))
    # every item once, to the best of a few random candidate users (Gumbel-max)
    cand = rng.integers(0, n_users, size=(n_items, _ITEM_CANDIDATES))
    s = np.einsum("ick,ik->ic", lat.P[cand], lat.Q) * scale + rng.gumbel(size=cand.shape)
    f_users = cand[np.arange(n_items), s.argmax(axis=1)]
    f_items = np.arange(n_items)
    forced = np.bincount(f_users, minlength=n_users)
    counts = _user_counts(rng, cfg, lat, forced)
    forced_keys = f_users * n_items + f_items
    u, i = _sample_distinct(rng, lat.P * scale, lat.Q.T, lat.log_popularity, counts, forced_keys)
    users = np.concatenate([f_users, u])
    items = np.concatenate([f_items, i])
    order = np.lexsort((items, users))
    return users[order], items[order]


def _kg(cfg: SyntheticConfig, lat: Latents) -> np.ndarray:
    """Item -> attribute triples. Attributes are split into relation blocks and each has a random
    direction; items draw attributes by softmax of ``Q_i . direction``, so shared attributes
    mean similar factors. The relation of a triple is its attribute's block."""
    rng = _rng(cfg, 2)
    n_items, n_attr = cfg.n_items, cfg.n_attributes
    if n_attr == 0 or cfg.triples_per_item <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    sizes = [len(b) for b in np.array_split(np.arange(n_attr), cfg.n_relations)]
    rel_of = np.repeat(np.arange(cfg.n_relations), sizes)  # relation r owns a block of attributes
    scale = np.float32(1.0 / (np.sqrt(cfg.latent_dim) * cfg.temperature))
    D = rng.standard_normal((cfg.latent_dim, n_attr), dtype=np.float32) * scale
    counts = np.minimum(rng.poisson(cfg.triples_per_item * (1 - cfg.kg_noise), n_items), n_attr)
    no_bias, none = np.zeros(n_attr, np.float32), np.zeros(0, np.int64)
    heads, tails = _sample_distinct(rng, side_factors(cfg, lat), D, no_bias, counts, none)
    n_noise = int(round(cfg.kg_noise * n_items * cfg.triples_per_item))
    heads = np.concatenate([heads, rng.integers(0, n_items, n_noise)])
    tails = np.concatenate([tails, rng.integers(0, n_attr, n_noise)])
    key = _sorted_unique(heads * n_attr + tails)  # a noise triple may repeat a planted one
    heads, tails = key // n_attr, key % n_attr
    return np.stack([heads, rel_of[tails], tails + n_items], axis=1)


def _features(cfg: SyntheticConfig, lat: Latents) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``Q @ W + noise * N(0, 1)`` per modality, written chunk by chunk into one float32 matrix
    (no float64 or full-size temporaries); missing rows are zero with mask False."""
    feats: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    n, k = cfg.n_items, cfg.latent_dim
    Q = side_factors(cfg, lat)
    for j, name in enumerate(sorted(cfg.feature_dims)):
        d = cfg.feature_dims[name]
        rng = _rng(cfg, 3, j)
        W = rng.standard_normal((k, d), dtype=np.float32) / np.float32(np.sqrt(k))
        out = np.empty((n, d), dtype=np.float32)
        step = max(1, 2**22 // d)
        noise = np.empty((min(step, n), d), dtype=np.float32)
        for s in range(0, n, step):
            e = min(n, s + step)
            np.matmul(Q[s:e], W, out=out[s:e])
            rng.standard_normal(out=noise[: e - s], dtype=np.float32)
            noise[: e - s] *= np.float32(cfg.feature_noise)
            out[s:e] += noise[: e - s]
        mask = np.ones(n, dtype=bool)
        rate = cfg.missing_rate.get(name, 0.0)
        mask[rng.permutation(n)[: int(round(rate * n))]] = False
        out[~mask] = 0.0
        feats[name], masks[name] = out, mask
    return feats, masks


def _split(cfg: SyntheticConfig, users: np.ndarray) -> np.ndarray:
    """Per-user random 80/20 train/test; every user keeps at least one training interaction."""
    rng = _rng(cfg, 4)
    order = np.lexsort((rng.random(len(users)), users))
    cnt = np.bincount(users, minlength=cfg.n_users)
    starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    rank = np.arange(len(users)) - starts[users[order]]
    n_train = np.maximum(1, np.round(0.8 * cnt)).astype(np.int64)
    split = np.empty(len(users), dtype=np.int8)
    split[order] = np.where(rank < n_train[users[order]], TRAIN, TEST)
    return split


def _validate(cfg: SyntheticConfig) -> None:
    if cfg.n_users < 1 or cfg.n_items < 1 or cfg.latent_dim < 1:
        raise DataError("synthetic: n_users, n_items and latent_dim must be >= 1")
    if not cfg.n_users + cfg.n_items <= cfg.n_interactions <= cfg.n_users * cfg.n_items:
        raise DataError(
            f"synthetic: n_interactions={cfg.n_interactions} must lie in [n_users + n_items, "
            f"n_users * n_items] = [{cfg.n_users + cfg.n_items}, {cfg.n_users * cfg.n_items}] "
            "so every user and item can appear"
        )
    if cfg.n_attributes and not 1 <= cfg.n_relations <= cfg.n_attributes:
        raise DataError("synthetic: need 1 <= n_relations <= n_attributes")
    if cfg.side not in SIDES:
        raise DataError(f"synthetic: side must be one of {SIDES}, got '{cfg.side}'")
    if cfg.temperature <= 0 or not 0 <= cfg.kg_noise <= 1:
        raise DataError("synthetic: temperature must be > 0 and kg_noise in [0, 1]")
    for name, rate in cfg.missing_rate.items():
        if name not in cfg.feature_dims or not 0 <= rate <= 1:
            raise DataError(f"synthetic: missing_rate['{name}'] must name a modality and lie in [0, 1]")


def generate(cfg: SyntheticConfig, name: str = "synthetic") -> RawDataset:
    """A :class:`RawDataset` with exactly ``n_interactions`` unique pairs, every user and item
    present, a KG over ``n_items + n_attributes`` entities, and features with presence masks."""
    _validate(cfg)
    lat = latent_factors(cfg)
    users, items = _interactions(cfg, lat)
    kg = _kg(cfg, lat)
    feats, masks = _features(cfg, lat)
    n_rel = cfg.n_relations if cfg.n_attributes else 0
    item_ids = np.array([f"i{i}" for i in range(cfg.n_items)])
    return RawDataset(
        name=name,
        users=users,
        items=items,
        n_users=cfg.n_users,
        n_items=cfg.n_items,
        user_ids=np.array([f"u{u}" for u in range(cfg.n_users)]),
        item_ids=item_ids,
        split=_split(cfg, users) if cfg.given_split else None,
        kg=kg,
        n_entities=cfg.n_items + cfg.n_attributes,
        relation_names=[f"rel{r}" for r in range(n_rel)],
        entity_ids=np.concatenate([item_ids, [f"a{a}" for a in range(cfg.n_attributes)]]),
        features=feats,
        feature_masks=masks,
        source=f"synthetic(seed={cfg.seed})",
    )
