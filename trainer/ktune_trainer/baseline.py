"""Reference rankers that make a learning effect visible: random order and BM25.

The third baseline, the untrained model, lives with the model code (`evaluation.score_groups`).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence

from ktune_trainer.data import QueryGroup
from ktune_trainer.ranking_metrics import ranking_metrics

TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def random_scores(groups: Sequence[QueryGroup], seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.random() for _ in group.product_ids] for group in groups]


def bm25_scores(groups: Sequence[QueryGroup], k1: float = 1.2, b: float = 0.75) -> list[list[float]]:
    """Okapi BM25 of each query against its candidates; document statistics over all candidates given."""
    documents = {
        pid: tokens(text) for group in groups for pid, text in zip(group.product_ids, group.product_texts, strict=True)
    }
    count = len(documents)
    average_length = sum(len(words) for words in documents.values()) / max(count, 1)
    document_frequency: Counter[str] = Counter()
    for words in documents.values():
        document_frequency.update(set(words))

    def idf(term: str) -> float:
        frequency = document_frequency.get(term, 0)
        return math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))

    scores = []
    for group in groups:
        query_terms = tokens(group.query)
        group_scores = []
        for pid in group.product_ids:
            words = documents[pid]
            frequencies = Counter(words)
            norm = k1 * (1 - b + b * len(words) / average_length)
            group_scores.append(
                sum(
                    idf(term) * frequencies[term] * (k1 + 1) / (frequencies[term] + norm)
                    for term in query_terms
                    if term in frequencies
                )
            )
        scores.append(group_scores)
    return scores


def baseline_metrics(groups: Sequence[QueryGroup], seed: int) -> dict[str, dict[str, float]]:
    """Ranking metrics of random order and BM25 on `groups`."""
    gains = [group.gains for group in groups]
    return {
        "random": ranking_metrics(random_scores(groups, seed), gains),
        "bm25": ranking_metrics(bm25_scores(groups), gains),
    }
