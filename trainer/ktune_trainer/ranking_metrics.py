"""Ranking metrics for graded ESCI judgements.

Conventions (stated once, used everywhere):
- Gains are the ESCI ones: E 1.0, S 0.1, C 0.01, I 0.0; DCG = sum(gain / log2(rank + 1)), linear
  gains because the ESCI gains are already the values a result is worth.
- ``ndcg_at_10`` cuts both the ranking and the ideal ranking at 10; ``ndcg`` uses all judged
  products of the query.
- ``mrr_at_10`` and ``recall_at_10`` count Exact (gain 1.0) products as relevant.
- Ties are broken pessimistically: among products with the same score, the less relevant ones are
  ranked first. A model that cannot tell products apart earns no credit from the order the data
  happened to come in, and the result never depends on input order.
- A query that cannot discriminate rankings (no positive gain for NDCG, no Exact product for MRR
  and recall) is left out of that metric's mean; a metric with no such query at all is 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RELEVANT_GAIN = 1.0
CUTOFF = 10
METRIC_NAMES = ("ndcg_at_10", "ndcg", "mrr_at_10", "recall_at_10")


def ranked_gains(scores: Sequence[float], gains: Sequence[float]) -> list[float]:
    """The gains in ranked order: score descending, ties with the lower gain first."""
    if len(scores) != len(gains):
        raise ValueError(f"{len(scores)} scores for {len(gains)} gains")
    order = sorted(range(len(gains)), key=lambda i: (-scores[i], gains[i]))
    return [gains[i] for i in order]


def dcg(gains_in_rank_order: Sequence[float], cutoff: int | None = None) -> float:
    top = gains_in_rank_order if cutoff is None else gains_in_rank_order[:cutoff]
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(top))


def ndcg(scores: Sequence[float], gains: Sequence[float], cutoff: int | None = None) -> float | None:
    """NDCG of one query, or None when the query has no positive gain."""
    ideal = dcg(sorted(gains, reverse=True), cutoff)
    if ideal <= 0:
        return None
    return dcg(ranked_gains(scores, gains), cutoff) / ideal


def reciprocal_rank(scores: Sequence[float], gains: Sequence[float], cutoff: int = CUTOFF) -> float | None:
    """1/rank of the first Exact product within the cutoff (0.0 if none), None without Exact products."""
    if not any(gain >= RELEVANT_GAIN for gain in gains):
        return None
    for rank, gain in enumerate(ranked_gains(scores, gains)[:cutoff], start=1):
        if gain >= RELEVANT_GAIN:
            return 1.0 / rank
    return 0.0


def recall(scores: Sequence[float], gains: Sequence[float], cutoff: int = CUTOFF) -> float | None:
    """Share of the query's Exact products ranked within the cutoff, None without Exact products."""
    relevant = sum(1 for gain in gains if gain >= RELEVANT_GAIN)
    if relevant == 0:
        return None
    found = sum(1 for gain in ranked_gains(scores, gains)[:cutoff] if gain >= RELEVANT_GAIN)
    return found / relevant


def _mean(values: list[float | None]) -> float:
    defined = [value for value in values if value is not None]
    return sum(defined) / len(defined) if defined else 0.0


def ranking_metrics(
    per_query_scores: Sequence[Sequence[float]], per_query_gains: Sequence[Sequence[float]]
) -> dict[str, float]:
    """Mean ``ndcg_at_10``, ``ndcg``, ``mrr_at_10`` and ``recall_at_10`` over queries."""
    pairs = list(zip(per_query_scores, per_query_gains, strict=True))
    return {
        "ndcg_at_10": _mean([ndcg(s, g, CUTOFF) for s, g in pairs]),
        "ndcg": _mean([ndcg(s, g) for s, g in pairs]),
        "mrr_at_10": _mean([reciprocal_rank(s, g) for s, g in pairs]),
        "recall_at_10": _mean([recall(s, g) for s, g in pairs]),
    }
