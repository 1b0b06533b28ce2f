"""RankingMetrics(collect_per_user=True): per-user values by user id, whose mean is compute()."""

from __future__ import annotations

import pytest
import torch

from slifmr.metrics import RankingMetrics


def test_per_user_values_average_to_compute_and_are_keyed_by_user():
    g = torch.Generator().manual_seed(0)
    metric = RankingMetrics((5, 10), prefix="test/", collect_per_user=True)
    chunks = [torch.arange(10, 20), torch.arange(0, 10)]  # out of order: sorted by id on the way out
    counted = []
    for users in chunks:
        hits = torch.rand(len(users), 10, generator=g) < 0.3
        n_rel = torch.randint(1, 4, (len(users),), generator=g)
        n_rel[0] = 0  # a user without ground truth is not counted, as in compute()
        metric.update(hits, n_rel, users)
        counted += users[n_rel > 0].tolist()
    means = metric.compute()
    pu = metric.per_user_values()
    assert pu["user"].tolist() == sorted(counted) == [u for u in range(20) if u not in (0, 10)]
    assert set(pu) == {"user"} | {f"{n}@{k}" for n in RankingMetrics.NAMES for k in (5, 10)}
    for key, v in pu.items():
        if key != "user":
            assert v.mean().item() == pytest.approx(means[f"test/{key}"].item(), abs=1e-12)
    metric.reset()
    assert len(metric.per_user_values()["user"]) == 0


def test_per_user_needs_the_flag_and_the_ids():
    with pytest.raises(ValueError, match="collect_per_user"):
        RankingMetrics((5,)).per_user_values()
    with pytest.raises(ValueError, match="user ids"):
        RankingMetrics((5,), collect_per_user=True).update(torch.zeros(2, 5, dtype=torch.bool),
                                                                 torch.ones(2, dtype=torch.long))
