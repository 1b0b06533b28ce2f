"""How G^n enters A^n and S^n (graphs/self_loop.py), per ``a_block`` switch, on a 2-user x 4-item
case whose normalised entries are worked out by hand below (degrees in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from slifmr.graphs.self_loop import A_BLOCKS, feature_graph, interaction_graph, item_block, item_block_share

U, I = 2, 4
USERS = torch.tensor([0, 0, 1, 1, 1])  # u0: i0 i1 | u1: i1 i2 i3
ITEMS = torch.tensor([0, 1, 1, 2, 3])
G = {(0, 1): 0.5, (1, 0): 0.5, (2, 3): 0.8, (3, 2): 0.4}  # raw cosines, directed
S0 = {(0, 2): 0.9, (1, 2): 0.6, (2, 0): 0.9, (3, 1): 0.7}  # one modality's raw cosine kNN


def coo(edges: dict, n: int = I) -> torch.Tensor:
    idx = torch.tensor(list(edges)).T
    return torch.sparse_coo_tensor(idx, torch.tensor(list(edges.values()), dtype=torch.float64), (n, n), check_invariants=True).coalesce()


def a_dense(a_block: str) -> torch.Tensor:
    return interaction_graph(USERS, ITEMS, U, I, coo(G), a_block).to_dense()


def test_cosine_block_carries_the_raw_cosines_normalised_once():
    a = a_dense("cosine")
    # raw degrees: u0 2, u1 3; i0 1+0.5, i1 2+0.5, i2 1+0.8, i3 1+0.4
    assert a[U + 0, U + 1] == pytest.approx(0.5 / math.sqrt(1.5 * 2.5))
    assert a[U + 2, U + 3] == pytest.approx(0.8 / math.sqrt(1.8 * 1.4))
    assert a[U + 3, U + 2] == pytest.approx(0.4 / math.sqrt(1.4 * 1.8))
    assert a[0, U + 0] == pytest.approx(1 / math.sqrt(2 * 1.5))
    assert a[1, U + 3] == pytest.approx(1 / math.sqrt(3 * 1.4))
    assert a[U + 0, U + 2] == 0 and a[0, 1] == 0  # no user-user block, no G edge


def test_binary_block_counts_each_edge_as_one():
    a = a_dense("binary")
    # degrees: i0 2, i1 3, i2 2, i3 2
    assert a[U + 0, U + 1] == pytest.approx(1 / math.sqrt(2 * 3))
    assert a[U + 2, U + 3] == pytest.approx(1 / math.sqrt(2 * 2))
    assert a[0, U + 0] == pytest.approx(1 / math.sqrt(2 * 2))


def test_normalized_block_is_the_old_double_normalisation():
    a = a_dense("normalized")
    # G normalised on its own: row sums 0.5 0.5 0.8 0.4 -> G'01 = 1, G'23 = 0.8/sqrt(0.32), G'32 = 0.4/sqrt(0.32)
    g23, g32 = 0.8 / math.sqrt(0.32), 0.4 / math.sqrt(0.32)
    # then A: degrees i0 1+1, i1 2+1, i2 1+g23, i3 1+g32
    assert a[U + 0, U + 1] == pytest.approx(1 / math.sqrt(2 * 3))
    assert a[U + 2, U + 3] == pytest.approx(g23 / math.sqrt((1 + g23) * (1 + g32)))
    assert a[1, U + 2] == pytest.approx(1 / math.sqrt(3 * (1 + g23)))


def test_without_g_every_switch_is_plain_a():
    a = interaction_graph(USERS, ITEMS, U, I, None).to_dense()
    for block in A_BLOCKS:
        torch.testing.assert_close(interaction_graph(USERS, ITEMS, U, I, None, block).to_dense(), a)
    assert a[U:, U:].abs().sum() == 0


def test_feature_graph_sums_raw_then_normalises_once():
    s = feature_graph(coo(S0), coo(G), "cosine").to_dense()
    # S0 + G row sums: r0 0.5+0.9, r1 0.5+0.6, r2 0.9+0.8, r3 0.7+0.4
    assert s[0, 2] == pytest.approx(0.9 / math.sqrt(1.4 * 1.7))
    assert s[0, 1] == pytest.approx(0.5 / math.sqrt(1.4 * 1.1))
    assert s[3, 1] == pytest.approx(0.7 / math.sqrt(1.1 * 1.1))
    b = feature_graph(coo(S0), coo(G), "binary").to_dense()
    # S0 + 1 per G edge: r0 1.9, r1 1.6, r2 1.9, r3 1.7
    assert b[0, 2] == pytest.approx(0.9 / math.sqrt(1.9 * 1.9))
    assert b[2, 3] == pytest.approx(1 / math.sqrt(1.9 * 1.7))
    # no G: S^0 normalised (Eq. 4)
    s0 = feature_graph(coo(S0)).to_dense()
    assert s0[1, 2] == pytest.approx(0.6 / math.sqrt(0.6 * 0.9))


def test_feature_graph_normalized_switch_is_the_old_build():
    s = feature_graph(coo(S0), coo(G), "normalized").to_dense()
    # norm(S0): 02 = 1, 12 = .6/sqrt(.54), 20 = 1, 31 = .7/sqrt(.42); norm(G): 01 = 10 = 1, 23, 32 as above
    s12, s31 = 0.6 / math.sqrt(0.54), 0.7 / math.sqrt(0.42)
    g23, g32 = 0.8 / math.sqrt(0.32), 0.4 / math.sqrt(0.32)
    deg = [1 + 1, s12 + 1, 1 + g23, s31 + g32]
    assert s[0, 2] == pytest.approx(1 / math.sqrt(deg[0] * deg[2]))
    assert s[3, 2] == pytest.approx(g32 / math.sqrt(deg[3] * deg[2]))


def test_item_block_values_per_switch_and_bad_switch():
    g = coo(G)
    assert torch.equal(item_block(g, "cosine").values(), g.values())
    assert torch.equal(item_block(g, "binary").values(), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="a_block"):
        item_block(g, "dense")
    with pytest.raises(ValueError, match="a_block"):
        interaction_graph(USERS, ITEMS, U, I, g, "raw")


def test_item_block_share_by_hand():
    a = interaction_graph(USERS, ITEMS, U, I, coo(G), "cosine")
    share = item_block_share(a, U)
    # row i0: user part 1/sqrt(2*1.5), G part 0.5/sqrt(1.5*2.5)
    user, g = 1 / math.sqrt(3.0), 0.5 / math.sqrt(3.75)
    assert share[0] == pytest.approx(g / (user + g))
    # the same mass under the old double normalisation is smaller
    old = item_block_share(interaction_graph(USERS, ITEMS, U, I, coo(G), "normalized"), U)
    assert share.shape == (I,) and (share > 0).all()
    # without G no item row has any item-item weight
    assert (item_block_share(interaction_graph(USERS, ITEMS, U, I), U) == 0).all()
    # an item without any edge has no share (NaN), not 0
    lonely = item_block_share(interaction_graph(USERS[:2], ITEMS[:2], U, I), U)
    assert lonely[2].isnan() and lonely[0] == 0
    assert old[0] != share[0]
