"""Fine-tuning a cross-encoder ranker: config, seeding, device, the training loop and its reports.

Steps (what ``ktune_trial_step`` means): without ``--eval-steps`` the model is evaluated after
each epoch and the step is the epoch number (1, 2, ...), which lines up trials with different
batch sizes for pruning. With ``--eval-steps N`` it is evaluated every N optimizer steps and at
the end of each epoch, and the step is the global optimizer step.

Distributed (``WORLD_SIZE`` > 1, see `ktune_trainer.distributed`): each epoch's shuffled queries are
dealt out to the ranks (``order[rank::world_size]``), so a query's candidates stay together for the
listwise loss; ``--batch-size`` stays the global batch (each rank takes ``ceil(batch_size / world_size)``
pairs per step), so a trial's parameters mean the same at any world size. Only rank 0 evaluates.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ktune_trainer.data import DataError, QueryGroup, RankingData
from ktune_trainer.distributed import Stopped, World
from ktune_trainer.evaluation import (
    EncodedSplit,
    LossFunction,
    collate,
    encode_split,
    evaluate,
    group_batches,
    loss_function,
)
from ktune_trainer.model import ModelError, Ranker, build_ranker, save_ranker
from ktune_trainer.ranking_metrics import METRIC_NAMES

Reporter = Callable[[int, Mapping[str, float]], None]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: training diverged."""


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters and run settings of one training run (one ktune trial)."""

    model: str = "tiny-bert"
    """`tiny-bert`, a Hugging Face model name, or a local model directory."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate, reached after warmup."""
    batch_size: int = 32
    """Pairs per optimizer step (listwise: whole queries, as many as fit, at least one)."""
    epochs: int = 3
    warmup_ratio: float = 0.1
    """Share of all optimizer steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (not applied to biases and LayerNorm weights)."""
    dropout: float | None = None
    """Dropout of hidden states and attention; None keeps the model's own (0.1 for tiny-bert)."""
    max_length: int = 128
    """Tokens per (query, product) pair; longer pairs are truncated, batches padded to their longest."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    loss: str = "listwise"
    seed: int = 42
    eval_steps: int | None = None
    """Evaluate every this many optimizer steps as well as after each epoch."""
    device: str = "auto"
    bf16: bool | None = None
    """bf16 autocast; None means on for CUDA devices that support it, off on CPU."""
    max_train_pairs: int | None = None
    """Train on whole queries up to this many pairs (a quick trial); None uses all."""
    output_dir: Path | None = None
    """Where to save the fine-tuned model and tokenizer."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    return torch.device(name)


def use_bf16(config: TrainingConfig, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    supported = torch.cuda.is_bf16_supported()
    return supported if config.bf16 is None else config.bf16 and supported


def capped_groups(groups: Sequence[QueryGroup], max_pairs: int | None, seed: int) -> tuple[QueryGroup, ...]:
    """A seeded random subset of whole queries with at most `max_pairs` pairs (at least one query)."""
    if max_pairs is None:
        return tuple(groups)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    chosen: list[int] = []
    pairs = 0
    for index in order:
        if chosen and pairs + len(groups[index]) > max_pairs:
            continue
        chosen.append(index)
        pairs += len(groups[index])
    return tuple(groups[index] for index in sorted(chosen))


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 to the peak rate, then linear decay to 0 at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate)


Batch = tuple[list[int], list[int]]
"""The pair indices of one optimizer step and the sizes of the query groups they form."""


def training_batches(split: EncodedSplit, config: TrainingConfig, epoch: int, world_size: int = 1) -> list[list[Batch]]:
    """Every rank's batches of one epoch (``[rank][step]``), computed alike on every rank.

    Pointwise: shuffled pairs, each its own group. Listwise: shuffled whole queries. With several
    ranks the shuffled queries are dealt out first; a rank with fewer batches than another repeats
    its own from the start, so that all ranks run the same number of steps (as DistributedSampler pads).
    """
    rng = random.Random(config.seed * 1_000_003 + epoch)
    budget = math.ceil(config.batch_size / world_size)
    order = list(range(len(split.groups)))
    if config.loss == "listwise" or world_size > 1:
        rng.shuffle(order)
    ranks: list[list[Batch]] = []
    for rank in range(world_size):
        groups = order[rank::world_size]
        if config.loss == "listwise":
            ranks.append([
                ([pair for group in batch for pair in split.group_slice(group)], [len(split.groups[g]) for g in batch])
                for batch in group_batches(split, groups, budget)
            ])
            continue
        pairs = [pair for group in sorted(groups) for pair in split.group_slice(group)]
        rng.shuffle(pairs)
        ranks.append([(pairs[start : start + budget], [1] * len(pairs[start : start + budget]))
                      for start in range(0, len(pairs), budget)])
    steps = max(len(batches) for batches in ranks)
    return [[batches[step % len(batches)] for step in range(steps)] for batches in ranks]


def gain_scale(groups: Sequence[QueryGroup]) -> float:
    """The largest training gain: pointwise targets are gains divided by it, so they lie in [0, 1]."""
    return max((gain for group in groups for gain in group.gains), default=1.0) or 1.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _format(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{name}={value:.4f}" for name, value in metrics.items())


def train(config: TrainingConfig, data: RankingData, report: Reporter, world: World | None = None) -> dict[str, float]:
    """Fine-tunes the ranker, reporting validation metrics at each evaluation; returns the final result.

    With several ranks (`world`) only rank 0 evaluates, reports and returns a result; the others return {}.
    """
    world = world or World()
    started = time.monotonic()
    say = log if world.is_main else _quiet
    say("config: " + " ".join(f"{name}={value}" for name, value in asdict(config).items()))
    seed_everything(config.seed)
    device = world.device(resolve_device(config.device))
    autocast = use_bf16(config, device)
    train_groups = capped_groups(data.split("train"), config.max_train_pairs, config.seed)
    if len(train_groups) < world.size:
        raise DataError(
            f"{len(train_groups)} training queries cannot be dealt out to WORLD_SIZE={world.size} processes: "
            "train on more queries (--data, --max-train-pairs) or start fewer processes"
        )
    # The process group starts first, so that a signal during the set-up still ends every rank alike.
    with world.collective(device):
        ranker, latest = _set_up_and_fit(config, data, train_groups, report, world, device, autocast)
    if not world.is_main:
        return {}

    test = encode_split(ranker, data.split("test"), config.max_length)
    test_metrics = evaluate(ranker, test, device, autocast, loss_function(config.loss, gain_scale(train_groups)))
    log(f"test: {_format(test_metrics)}")
    if config.output_dir is not None:
        save_ranker(ranker, config.output_dir)
        log(f"saved model and tokenizer to {config.output_dir}")
    result = dict(latest)
    result.update({f"test_{name}": test_metrics[name] for name in METRIC_NAMES})
    result["model_parameters"] = ranker.parameter_count
    result["train_seconds"] = time.monotonic() - started
    return result


def _set_up_and_fit(
    config: TrainingConfig, data: RankingData, train_groups: tuple[QueryGroup, ...], report: Reporter, world: World,
    device: torch.device, autocast: bool,
) -> tuple[Ranker, dict[str, float]]:
    say = log if world.is_main else _quiet
    texts = [text for group in data.split("train") for text in (group.query, *group.product_texts)]
    ranker = build_ranker(config.model, texts, config.max_length, config.dropout)
    ranker.model.to(device)
    if world.distributed:  # same initial weights everywhere (DDP broadcasts rank 0's), own dropout masks per rank
        torch.manual_seed(config.seed * 1_000_003 + world.rank)
    train_split = encode_split(ranker, train_groups, config.max_length)
    validation = encode_split(ranker, data.split("validation"), config.max_length)
    loss = loss_function(config.loss, gain_scale(train_groups))
    say(
        f"model {ranker.source}: {ranker.parameter_count} parameters on {device.type}"
        f"{' (bf16)' if autocast else ''}; {len(train_split.features)} training pairs in {len(train_groups)} queries"
        + (f"; rank {world.rank} of {world.size}" if world.distributed else "")
    )
    return ranker, _fit(config, _Run(ranker, train_split, validation, loss, device, autocast, report, world))


def _quiet(_message: str) -> None:
    """Ranks other than 0 keep their progress to themselves (rank 0 speaks for the run)."""


@dataclass(frozen=True)
class _Run:
    """What the training loop works on."""

    ranker: Ranker
    train_split: EncodedSplit
    validation: EncodedSplit
    loss: LossFunction
    device: torch.device
    autocast: bool
    report: Reporter
    world: World


def _agree(run: _Run, problem: str | None, step: int) -> None:
    """Ends every rank alike: a signal on any rank (Stopped), a non-finite value on any (NonFiniteLoss)."""
    bad_rank, signum, signalled = run.world.agree(problem is not None, run.device)
    if signum:
        raise Stopped(signum, None if signalled == run.world.rank else signalled)
    if problem is not None:
        raise NonFiniteLoss(problem)
    if bad_rank is not None:
        raise NonFiniteLoss(
            f"rank {bad_rank} met a non-finite loss or metric at step {step} (its log says which); "
            "lower --learning-rate or set --max-grad-norm"
        )


def _fit(config: TrainingConfig, run: _Run) -> dict[str, float]:
    """The training loop; returns the metrics of the last evaluation (rank 0; {} elsewhere)."""
    ranker, world, device = run.ranker, run.world, run.device
    module = world.wrap(ranker.model, device)
    optimizer = adamw(ranker.model, config.learning_rate, config.weight_decay)
    steps_per_epoch = len(training_batches(run.train_split, config, 0, world.size)[0])
    total_steps = steps_per_epoch * config.epochs
    scheduler = linear_schedule(optimizer, math.floor(config.warmup_ratio * total_steps), total_steps)

    global_step, pairs_seen, train_seconds = 0, 0, 0.0
    loss_sum, loss_batches = 0.0, 0
    latest: dict[str, float] = {}
    last_evaluated = -1

    def evaluate_and_report(step: int) -> None:
        nonlocal loss_sum, loss_batches, latest, last_evaluated
        problem = None
        if world.is_main:
            with world.interruptible():
                metrics = evaluate(ranker, run.validation, device, run.autocast, run.loss)
                metrics["train_loss"] = loss_sum / max(1, loss_batches)
                metrics["pairs_per_second"] = pairs_seen / max(train_seconds, 1e-9)
                if all(math.isfinite(value) for value in metrics.values()):
                    run.report(step, metrics)
                    log(f"step {step}: {_format(metrics)}")
                    latest = metrics
                else:
                    problem = f"evaluation at step {step} produced non-finite values: {_format(metrics)}"
        _agree(run, problem, step)
        last_evaluated = global_step
        loss_sum, loss_batches = 0.0, 0

    for epoch in range(1, config.epochs + 1):
        every_rank = training_batches(run.train_split, config, epoch, world.size)
        for index, (batch, sizes) in enumerate(every_rank[world.rank]):
            ranker.model.train()
            tick = time.monotonic()
            inputs = collate(ranker, run.train_split, batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=run.autocast):
                logits = module(**inputs).logits
            batch_loss = run.loss(logits.float().squeeze(-1), run.train_split.gains[batch].to(device), sizes)
            finite = bool(torch.isfinite(batch_loss))
            _agree(run, None if finite else (
                f"training loss became {batch_loss.item()} at step {global_step + 1} (epoch {epoch}); "
                "lower --learning-rate or set --max-grad-norm"
            ), global_step + 1)
            batch_loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(ranker.model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            train_seconds += time.monotonic() - tick
            global_step += 1
            pairs_seen += sum(len(batches[index][0]) for batches in every_rank)
            loss_sum += batch_loss.item()
            loss_batches += 1
            if config.eval_steps and global_step % config.eval_steps == 0:
                evaluate_and_report(global_step)
        if not config.eval_steps:
            evaluate_and_report(epoch)
        elif last_evaluated != global_step:
            evaluate_and_report(global_step)
    return latest


def untrained_metrics(config: TrainingConfig, data: RankingData, split: str) -> dict[str, float]:
    """Metrics of the model before any training, built exactly as `train` builds it (same seed)."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    texts = [text for group in data.split("train") for text in (group.query, *group.product_texts)]
    ranker: Ranker = build_ranker(config.model, texts, config.max_length, config.dropout)
    ranker.model.to(device)
    encoded = encode_split(ranker, data.split(split), config.max_length)
    loss = loss_function(
        config.loss, gain_scale(capped_groups(data.split("train"), config.max_train_pairs, config.seed))
    )
    return evaluate(ranker, encoded, device, use_bf16(config, device), loss)
