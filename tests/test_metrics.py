"""Ranking metrics (DESIGN 7) against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from adagrpo_core.eval.metrics import hallucination_rate, hr_at_k, ndcg_at_k, ranking_metrics, target_rank, topk_from_scores

LOG2_3 = 1 / math.log2(3)   # NDCG gain at rank 1

# one row per case; target 7 unless stated
RANKED = np.array([
    [7, 1, 2, 3, 4],     # rank 0
    [1, 7, 2, 3, 4],     # rank 1
    [1, 2, 3, 4, 7],     # rank 4
    [1, 2, 3, 4, 5],     # miss
    [1, 1, 7, 7, 2],     # duplicates: first occurrence at rank 2
    [-1, -1, -1, 7, -1],  # invalid entries still take their slots: rank 3
])
TARGET = np.full(len(RANKED), 7)
RANK = [0, 1, 4, -1, 2, 3]


def test_target_rank_hand_computed():
    assert target_rank(RANKED, TARGET).tolist() == RANK
    # a -1 target never matches a -1 (hallucinated) entry
    assert target_rank([[-1, 3, -1]], [-1]).tolist() == [-1]
    assert target_rank([[5, 5, 5]], [5]).tolist() == [0]


@pytest.mark.parametrize("k,hits", [
    (1, [1, 0, 0, 0, 0, 0]),
    (2, [1, 1, 0, 0, 0, 0]),
    (3, [1, 1, 0, 0, 1, 0]),
    (4, [1, 1, 0, 0, 1, 1]),
    (5, [1, 1, 1, 0, 1, 1]),
    (10, [1, 1, 1, 0, 1, 1]),
])
def test_hr_at_k_hand_computed(k, hits):
    np.testing.assert_array_equal(hr_at_k(RANKED, TARGET, k, reduce=False), hits)
    assert hr_at_k(RANKED, TARGET, k) == pytest.approx(sum(hits) / len(hits))


@pytest.mark.parametrize("k,gains", [
    (1, [1, 0, 0, 0, 0, 0]),
    (2, [1, LOG2_3, 0, 0, 0, 0]),
    (3, [1, LOG2_3, 0, 0, 0.5, 0]),
    (4, [1, LOG2_3, 0, 0, 0.5, 1 / math.log2(5)]),
    (5, [1, LOG2_3, 1 / math.log2(6), 0, 0.5, 1 / math.log2(5)]),
])
def test_ndcg_at_k_hand_computed(k, gains):
    np.testing.assert_allclose(ndcg_at_k(RANKED, TARGET, k, reduce=False), gains, rtol=1e-12)
    assert ndcg_at_k(RANKED, TARGET, k) == pytest.approx(np.mean(gains))


def test_target_at_k_minus_one_and_at_k():
    # target at position K-1 counts for @K; at position K it does not
    k = 3
    at_k_minus_1 = [[0, 1, 9, 2]]
    at_k = [[0, 1, 2, 9]]
    assert hr_at_k(at_k_minus_1, [9], k) == 1.0
    assert ndcg_at_k(at_k_minus_1, [9], k) == pytest.approx(0.5)
    assert hr_at_k(at_k, [9], k) == 0.0
    assert ndcg_at_k(at_k, [9], k) == 0.0
    assert hr_at_k(at_k, [9], k + 1) == 1.0
    assert ndcg_at_k(at_k, [9], k + 1) == pytest.approx(1 / math.log2(5))


def test_duplicates_count_once():
    # the target listed three times still scores a single hit at its first position
    ranked = [[9, 9, 9, 1]]
    assert hr_at_k(ranked, [9], 3) == 1.0
    assert ndcg_at_k(ranked, [9], 3) == 1.0
    later = [[1, 4, 4, 4]]
    assert ndcg_at_k(later, [4], 4) == pytest.approx(LOG2_3)


def test_metrics_accept_lists_and_never_exceed_one():
    rng = np.random.default_rng(0)
    ranked = rng.integers(-1, 20, size=(200, 10))
    target = rng.integers(0, 20, size=200)
    for k in (1, 5, 10, 20):
        h = hr_at_k(ranked, target, k, reduce=False)
        n = ndcg_at_k(ranked, target, k, reduce=False)
        assert ((n >= 0) & (n <= h + 1e-12)).all()
    # with a list longer than any position, HR@k equals "target is anywhere in the list"
    anywhere = np.array([t in row for row, t in zip(ranked.tolist(), target.tolist())], dtype=float)
    np.testing.assert_array_equal(hr_at_k(ranked, target, 10, reduce=False), anywhere)
    np.testing.assert_array_equal(hr_at_k(ranked, target, 50, reduce=False), anywhere)


def test_hallucination_rate():
    ranked = np.array([[-1, 1, -1, 2],
                       [3, 4, 5, 6],
                       [-1, -1, -1, -1]])
    np.testing.assert_allclose(hallucination_rate(ranked, reduce=False), [0.5, 0.0, 1.0])
    assert hallucination_rate(ranked) == pytest.approx(0.5)
    np.testing.assert_allclose(hallucination_rate(ranked, k=1, reduce=False), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(hallucination_rate(ranked, k=2, reduce=False), [0.5, 0.0, 1.0])
    np.testing.assert_allclose(hallucination_rate(ranked, k=3, reduce=False), [2 / 3, 0.0, 1.0])
    assert hallucination_rate(ranked, k=3) == pytest.approx((2 / 3 + 0 + 1) / 3)
    # k beyond the list length uses the whole list
    assert hallucination_rate(ranked, k=10) == pytest.approx(0.5)


def test_ranking_metrics_dict():
    out = ranking_metrics(RANKED, TARGET, ks=(1, 3))
    assert set(out) == {"HR@1", "NDCG@1", "HR@3", "NDCG@3", "halluc"}
    assert out["HR@1"] == pytest.approx(1 / 6)
    assert out["HR@3"] == pytest.approx(3 / 6)
    assert out["NDCG@3"] == pytest.approx((1 + LOG2_3 + 0.5) / 6)
    # hallucination over the first max(ks) = 3 entries: only the last row has any (3 of 3)
    assert out["halluc"] == pytest.approx(1 / 6)
    default = ranking_metrics(RANKED, TARGET)
    assert {"HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "halluc"} == set(default)


def test_topk_from_scores_ties_go_to_lower_id():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0],
                       [0.0, 0.0, 0.0, 0.0, 0.0],
                       [5.0, -np.inf, 4.0, 5.0, 4.0]])
    assert topk_from_scores(scores, 3).tolist() == [[1, 2, 4], [0, 1, 2], [0, 3, 2]]
    assert topk_from_scores(scores, 1).tolist() == [[1], [0], [0]]
    # k larger than the catalogue returns the full ranking
    full = topk_from_scores(scores, 10)
    assert full.tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4], [0, 3, 2, 4, 1]]
    # integer scores too
    assert topk_from_scores(np.array([[2, 7, 7, 1]]), 2).tolist() == [[1, 2]]
    # unsigned and boolean scores: higher is still better
    assert topk_from_scores(np.array([[0, 200, 1, 200]], dtype=np.uint8), 3).tolist() == [[1, 3, 2]]
    assert topk_from_scores(np.array([[False, True, False, True]]), 2).tolist() == [[1, 3]]


def test_topk_from_scores_agrees_with_metrics():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((50, 30))
    target = rng.integers(0, 30, 50)
    ranked = topk_from_scores(scores, 30)
    # rank of the target = number of items with a strictly higher score (no ties here)
    want = (scores > scores[np.arange(50), target][:, None]).sum(1)
    np.testing.assert_array_equal(target_rank(ranked, target), want)


@pytest.mark.parametrize("fn", [hr_at_k, ndcg_at_k])
def test_rank_metrics_reject_bad_input(fn):
    with pytest.raises(ValueError, match="ranked"):
        fn(np.array([1, 2, 3]), np.array([1]), 5)
    with pytest.raises(ValueError, match="target"):
        fn(np.array([[1, 2, 3]]), np.array([1, 2]), 5)
    with pytest.raises(ValueError, match="target"):
        fn(np.array([[1, 2, 3]]), np.array([[1]]), 5)
    with pytest.raises(ValueError, match="k=0"):
        fn(np.array([[1, 2, 3]]), np.array([1]), 0)
    with pytest.raises(ValueError, match="k=-2"):
        fn(np.array([[1, 2, 3]]), np.array([1]), -2)
    with pytest.raises(ValueError, match="k=2.5"):
        fn(np.array([[1, 2, 3]]), np.array([1]), 2.5)


def test_other_functions_reject_bad_input():
    with pytest.raises(ValueError, match="ranked"):
        target_rank(np.zeros((2, 2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="ranked"):
        hallucination_rate(np.array([1, -1]))
    with pytest.raises(ValueError, match="k=0"):
        hallucination_rate(np.array([[1, -1]]), k=0)
    with pytest.raises(ValueError, match="scores"):
        topk_from_scores(np.array([1.0, 2.0]), 1)
    with pytest.raises(ValueError, match="k=0"):
        topk_from_scores(np.array([[1.0, 2.0]]), 0)
    with pytest.raises(ValueError, match="k=-1"):
        topk_from_scores(np.array([[1.0, 2.0, 3.0]]), -1)
    with pytest.raises(ValueError, match="k=0"):
        ranking_metrics(RANKED, TARGET, ks=(0, 5))
