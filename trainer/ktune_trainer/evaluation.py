"""Tokenised splits, batching with dynamic padding, scoring, losses and evaluation of a ranker."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ktune_trainer.data import QueryGroup
from ktune_trainer.model import Ranker
from ktune_trainer.ranking_metrics import ranking_metrics

LOSSES = ("pointwise-bce", "pointwise-mse", "listwise")
EVAL_BATCH_PAIRS = 256


@dataclass(frozen=True)
class EncodedSplit:
    """The pairs of a split, tokenised once; pairs of group g are ``offsets[g]:offsets[g + 1]``."""

    groups: tuple[QueryGroup, ...]
    features: tuple[dict[str, list[int]], ...]
    gains: torch.Tensor
    offsets: tuple[int, ...]

    def group_slice(self, index: int) -> range:
        return range(self.offsets[index], self.offsets[index + 1])


def encode_split(ranker: Ranker, groups: Sequence[QueryGroup], max_length: int) -> EncodedSplit:
    queries = [group.query for group in groups for _ in group.product_ids]
    products = [text for group in groups for text in group.product_texts]
    encoded = ranker.tokenizer(queries, products, truncation=True, max_length=max_length)
    # The attention mask is rebuilt when padding; other inputs (token types) only where the model takes them.
    names = [name for name in ranker.tokenizer.model_input_names if name in encoded and name != "attention_mask"]
    features = tuple({name: encoded[name][i] for name in names} for i in range(len(queries)))
    offsets = [0]
    for group in groups:
        offsets.append(offsets[-1] + len(group))
    gains = torch.tensor([gain for group in groups for gain in group.gains], dtype=torch.float32)
    return EncodedSplit(tuple(groups), features, gains, tuple(offsets))


def collate(ranker: Ranker, split: EncodedSplit, indices: Sequence[int], device: torch.device) -> dict[str, Any]:
    """Pads a batch to its own longest pair (dynamic padding, on the right) and moves it to `device`."""
    rows = [split.features[i] for i in indices]
    width = max(len(row["input_ids"]) for row in rows)
    pad_values = {"input_ids": ranker.tokenizer.pad_token_id}
    batch = {
        name: torch.tensor([row[name] + [pad_values.get(name, 0)] * (width - len(row[name])) for row in rows])
        for name in rows[0]
    }
    batch["attention_mask"] = torch.tensor(
        [[1] * len(row["input_ids"]) + [0] * (width - len(row["input_ids"])) for row in rows]
    )
    return {name: tensor.to(device) for name, tensor in batch.items()}


def pairwise_targets(gains: torch.Tensor, gain_scale: float) -> torch.Tensor:
    return gains / gain_scale


def listwise_loss(scores: torch.Tensor, gains: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Softmax cross-entropy between each query's scores and its gains normalised to sum 1.

    Queries without any positive gain carry no ranking signal and are left out.
    """
    losses = []
    for group_scores, group_gains in zip(
        torch.split(scores, list(sizes)), torch.split(gains, list(sizes)), strict=True
    ):
        total = group_gains.sum()
        if total > 0:
            losses.append(-(group_gains / total * F.log_softmax(group_scores, dim=0)).sum())
    if not losses:
        return scores.sum() * 0.0
    return torch.stack(losses).mean()


LossFunction = Callable[[torch.Tensor, torch.Tensor, Sequence[int]], torch.Tensor]


def loss_function(name: str, gain_scale: float) -> LossFunction:
    """The training loss by name; pointwise losses treat gains (scaled to at most 1) as targets."""
    if name == "pointwise-bce":
        return lambda scores, gains, _sizes: F.binary_cross_entropy_with_logits(
            scores, pairwise_targets(gains, gain_scale)
        )
    if name == "pointwise-mse":
        return lambda scores, gains, _sizes: F.mse_loss(scores, pairwise_targets(gains, gain_scale))
    if name == "listwise":
        return listwise_loss
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")


def group_batches(split: EncodedSplit, order: Sequence[int], pairs_per_batch: int) -> Iterator[list[int]]:
    """Whole queries per batch, as many as fit in `pairs_per_batch` (at least one)."""
    batch: list[int] = []
    size = 0
    for index in order:
        count = len(split.groups[index])
        if batch and size + count > pairs_per_batch:
            yield batch
            batch, size = [], 0
        batch.append(index)
        size += count
    if batch:
        yield batch


@torch.no_grad()
def score_split(ranker: Ranker, split: EncodedSplit, device: torch.device, autocast: bool) -> torch.Tensor:
    """Relevance scores of every pair of the split, in split order."""
    ranker.model.eval()
    scores = []
    for start in range(0, len(split.features), EVAL_BATCH_PAIRS):
        indices = range(start, min(start + EVAL_BATCH_PAIRS, len(split.features)))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = ranker.model(**collate(ranker, split, indices, device)).logits
        scores.append(logits.float().squeeze(-1).cpu())
    return torch.cat(scores)


def split_metrics(split: EncodedSplit, scores: torch.Tensor) -> dict[str, float]:
    """Ranking metrics of the given scores on the split."""
    per_query = [scores[split.offsets[g] : split.offsets[g + 1]].tolist() for g in range(len(split.groups))]
    return ranking_metrics(per_query, [group.gains for group in split.groups])


def evaluate(
    ranker: Ranker, split: EncodedSplit, device: torch.device, autocast: bool, loss: LossFunction
) -> dict[str, float]:
    """``ndcg_at_10``, ``ndcg``, ``mrr_at_10``, ``recall_at_10`` and ``eval_loss`` on a split."""
    scores = score_split(ranker, split, device, autocast)
    sizes = [len(group) for group in split.groups]
    metrics = split_metrics(split, scores)
    metrics["eval_loss"] = float(loss(scores, split.gains, sizes))
    return metrics
