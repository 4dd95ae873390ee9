"""Rank fusion of short ranked lists: one ranking, distinct ids, the expected order."""

import pytest

from mmtools.errors import UsageError
from mmtools.fusion import RRF_K, fuse_rankings


def test_rrf_orders_by_summed_reciprocal_ranks_with_distinct_ids():
    a = [("x", 0.9), ("y", 0.8), ("z", 0.1)]
    b = [("y", 0.7), ("w", 0.6), ("x", 0.5)]
    fused = fuse_rankings([a, b], k=10)
    assert [hit.id for hit in fused] == ["y", "x", "w", "z"]  # y: 1/62+1/61 > x: 1/61+1/63
    assert fused[0].score == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert fused[0].members == {0: (2, 0.8), 1: (1, 0.7)}
    assert len({hit.id for hit in fused}) == len(fused)
    assert [hit.id for hit in fuse_rankings([a, b], k=2)] == ["y", "x"]


def test_weighted_normalised_scores_follow_the_weights():
    a = [("x", 0.9), ("y", 0.5)]
    b = [("y", 30.0), ("x", 10.0)]  # another scale entirely: normalisation makes them comparable
    assert [hit.id for hit in fuse_rankings([a, b], weights=[0.7, 0.3])] == ["x", "y"]
    assert [hit.id for hit in fuse_rankings([a, b], weights=[0.3, 0.7])] == ["y", "x"]


def test_bad_weights_are_usage_errors():
    with pytest.raises(UsageError, match="one weight per model"):
        fuse_rankings([[("x", 1.0)], [("x", 1.0)]], weights=[1.0])
    with pytest.raises(UsageError, match="above zero"):
        fuse_rankings([[("x", 1.0)]], weights=[0.0])


def test_an_id_repeated_in_one_list_counts_once():
    fused = fuse_rankings([[("x", 0.9), ("x", 0.8), ("y", 0.7)]])
    assert [hit.id for hit in fused] == ["x", "y"]


def test_tied_scores_share_their_worst_rank():
    # Two models that cannot tell x from y: the order they happen to be listed in must not decide.
    a = [("x", 0.5), ("y", 0.5), ("z", 0.1)]
    b = [("x", 0.7), ("y", 0.7), ("z", 0.2)]
    fused = fuse_rankings([a, b])
    assert fused[0].members[0][0] == fused[1].members[0][0] == 2
    assert fused[0].score == fused[1].score == pytest.approx(2 / (RRF_K + 2))
