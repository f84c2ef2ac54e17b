import math

import pytest

from ktune_trainer.ranking_metrics import dcg, ndcg, ranked_gains, ranking_metrics, recall, reciprocal_rank

E, S, I = 1.0, 0.1, 0.0  # noqa: E741 (the ESCI letters)


def test_dcg_discounts_each_rank_by_log2_of_rank_plus_one():
    assert dcg([1.0, 0.1, 0.01]) == pytest.approx(1.0 + 0.1 / math.log2(3) + 0.01 / 2)


def test_ndcg_of_a_hand_computed_ranking():
    # ranking by score: I, E, S  -> dcg = 0 + 1/log2(3) + 0.1/2 ; ideal: E, S, I -> 1 + 0.1/log2(3)
    value = ndcg(scores=[3.0, 2.0, 1.0], gains=[I, E, S])
    assert value == pytest.approx((1 / math.log2(3) + 0.05) / (1 + 0.1 / math.log2(3)))


def test_perfect_ranking_has_ndcg_one_and_cutoff_applies_to_the_ideal_too():
    gains = [E] * 12 + [S]
    scores = list(range(len(gains), 0, -1))
    assert ndcg(scores, gains, 10) == pytest.approx(1.0)
    # The ideal DCG@10 is cut at 10 too, so ten Exact products on top score 1.0 although more exist.
    assert ndcg(scores, gains) == pytest.approx(1.0)


def test_ties_rank_the_less_relevant_product_first():
    assert ranked_gains([1.0, 1.0, 0.5], [E, I, S]) == [I, E, S]
    assert ndcg([0.0, 0.0], [E, I]) == pytest.approx(1 / math.log2(3))
    assert reciprocal_rank([0.0, 0.0, 0.0], [E, S, I]) == pytest.approx(1 / 3)


def test_tie_result_does_not_depend_on_input_order():
    assert ndcg([1.0, 1.0, 1.0], [E, S, I]) == ndcg([1.0, 1.0, 1.0], [I, S, E])


def test_query_without_relevant_products_is_left_out_of_the_means():
    assert ndcg([1.0, 2.0], [I, I]) is None
    assert reciprocal_rank([1.0, 2.0], [S, I]) is None
    assert recall([1.0, 2.0], [S, I]) is None
    metrics = ranking_metrics([[2.0, 1.0], [1.0, 2.0]], [[E, I], [S, I]])
    # Only the first query has an Exact product; the second still counts for NDCG (it has a gain).
    assert metrics["mrr_at_10"] == pytest.approx(1.0)
    assert metrics["recall_at_10"] == pytest.approx(1.0)
    assert metrics["ndcg"] == pytest.approx((1.0 + (0.1 / math.log2(3)) / 0.1) / 2)


def test_metrics_are_zero_when_no_query_can_be_judged():
    assert ranking_metrics([[1.0]], [[I]]) == {"ndcg_at_10": 0.0, "ndcg": 0.0, "mrr_at_10": 0.0, "recall_at_10": 0.0}


def test_mrr_and_recall_count_only_the_top_ten():
    gains = [I] * 10 + [E, E]
    scores = list(range(12, 0, -1))
    assert reciprocal_rank(scores, gains) == 0.0
    assert recall(scores, gains) == 0.0
    gains = [I] * 9 + [E, E]
    assert reciprocal_rank(list(range(11, 0, -1)), gains) == pytest.approx(0.1)
    assert recall(list(range(11, 0, -1)), gains) == pytest.approx(0.5)


def test_scores_and_gains_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="2 scores for 3 gains"):
        ranked_gains([1.0, 2.0], [E, S, I])
