"""Training and evaluation pairs/s of ktune-trainer vs. a Hugging Face `transformers.Trainer` baseline.

Both train the same tiny-bert cross-encoder (same initial weights: same builder, same seed) on the same
synthetic data, with the same pointwise MSE loss, batch size, maximum sequence length, optimizer (AdamW,
linear schedule, clipping at 1.0) and dynamic padding, in one process, alternating `--repeats` times so
that load on a shared machine hits both alike; the best rate of each is reported with the ratio.

- ktune training pairs/s: the trainer's own `pairs_per_second` (time inside optimizer steps: collate,
  forward, backward, step), from `ktune_trainer.training.train`.
- HF training pairs/s: `train_samples_per_second` of `Trainer.train()` (its whole loop, data loading included).
- Evaluation pairs/s: scoring the validation split `--eval-repeats` times in a row (one pass takes a
  fraction of a second, too short to time on a loaded machine) — `ktune_trainer.evaluation.evaluate`
  (scores plus ranking metrics) vs. `Trainer.evaluate()` (loss only), both 256 pairs per batch.

    python -m bench.trainer_throughput                       # CPU
    python -m bench.trainer_throughput --device cuda --bf16  # a GPU
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.results import machine, markdown_table, write_results
from ktune_trainer.data import RankingData, load_data
from ktune_trainer.evaluation import EVAL_BATCH_PAIRS, encode_split, evaluate, loss_function
from ktune_trainer.model import TINY_BERT, build_ranker
from ktune_trainer.training import TrainingConfig, gain_scale, resolve_device, seed_everything, train

LOSS = "pointwise-mse"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200, help="synthetic queries (about 30 pairs each)")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best rate counts")
    parser.add_argument("--eval-repeats", type=int, default=10, help="validation passes timed together")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA) in both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--name", default="trainer_throughput")
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> TrainingConfig:
    return TrainingConfig(
        model=TINY_BERT, learning_rate=1e-3, batch_size=args.batch_size, epochs=args.epochs, max_length=args.max_length,
        loss=LOSS, seed=42, device=args.device, bf16=args.bf16, warmup_ratio=0.1,
    )


def ktune_rates(config: TrainingConfig, data: RankingData, eval_repeats: int) -> dict[str, float]:
    """Training pairs/s from a full `train` run; evaluation pairs/s from scoring the validation split."""
    reports: list[dict[str, float]] = []
    train(config, data, lambda _step, metrics: reports.append(dict(metrics)))
    device = resolve_device(config.device)
    ranker, validation = built_ranker(config, data)
    ranker.model.to(device)
    loss = loss_function(LOSS, gain_scale(data.split("train")))
    evaluate(ranker, validation, device, config.bf16 or False, loss)  # warm-up
    tick = time.perf_counter()
    for _ in range(eval_repeats):
        evaluate(ranker, validation, device, config.bf16 or False, loss)
    seconds = time.perf_counter() - tick
    return {"train_pairs_per_second": reports[-1]["pairs_per_second"],
            "eval_pairs_per_second": eval_repeats * len(validation.features) / seconds}


def built_ranker(config: TrainingConfig, data: RankingData) -> tuple[Any, Any]:
    """The tiny-bert ranker as `train` builds it (same seed, same tokenizer) and the encoded validation split."""
    seed_everything(config.seed)
    texts = [text for group in data.split("train") for text in (group.query, *group.product_texts)]
    ranker = build_ranker(config.model, texts, config.max_length, config.dropout)
    return ranker, encode_split(ranker, data.split("validation"), config.max_length)


def hf_dataset(split: Any, scale: float) -> list[dict[str, Any]]:
    return [dict(features, labels=float(gain) / scale) for features, gain in zip(split.features, split.gains.tolist(),
                                                                                   strict=True)]


def hf_rates(config: TrainingConfig, data: RankingData, out_dir: Path, eval_repeats: int) -> dict[str, float]:
    """The same model, data and settings through `transformers.Trainer` (MSE regression head, num_labels=1)."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    ranker, validation = built_ranker(config, data)
    scale = gain_scale(data.split("train"))
    train_split = encode_split(ranker, data.split("train"), config.max_length)
    ranker.model.config.problem_type = "regression"
    steps = math.ceil(len(train_split.features) / config.batch_size) * config.epochs
    arguments = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=EVAL_BATCH_PAIRS, num_train_epochs=config.epochs, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, warmup_steps=math.floor(config.warmup_ratio * steps),
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="linear", seed=config.seed, report_to=[], save_strategy="no", logging_strategy="no",
        eval_strategy="no", dataloader_num_workers=0, use_cpu=config.device == "cpu", bf16=bool(config.bf16),
        disable_tqdm=True,
    )
    trainer = Trainer(model=ranker.model, args=arguments, train_dataset=hf_dataset(train_split, scale),
                      eval_dataset=hf_dataset(validation, scale),
                      data_collator=DataCollatorWithPadding(ranker.tokenizer))
    trained = trainer.train()
    trainer.evaluate()  # warm-up
    tick = time.perf_counter()
    for _ in range(eval_repeats):
        trainer.evaluate()
    seconds = time.perf_counter() - tick
    return {"train_pairs_per_second": trained.metrics["train_samples_per_second"],
            "eval_pairs_per_second": eval_repeats * len(validation.features) / seconds}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(f"synthetic:queries={args.queries},seed={args.data_seed}")
    config = config_of(args)
    runs: dict[str, list[dict[str, float]]] = {"ktune": [], "hf": []}
    with tempfile.TemporaryDirectory(prefix="hf-trainer-") as scratch:  # Trainer wants an output_dir; it saves nothing
        for _ in range(args.repeats):
            runs["ktune"].append(ktune_rates(config, data, args.eval_repeats))
            runs["hf"].append(hf_rates(config, data, Path(scratch), args.eval_repeats))
    best = {system: {key: max(run[key] for run in results) for key in results[0]} for system, results in runs.items()}
    return {
        "machine": machine(), "torch_threads": torch.get_num_threads(),
        "settings": {"queries": args.queries, "data_seed": args.data_seed, "train_pairs": data.pair_count("train"),
                     "validation_pairs": data.pair_count("validation"), "batch_size": args.batch_size,
                     "max_length": args.max_length, "epochs": args.epochs, "device": args.device, "bf16": args.bf16,
                     "repeats": args.repeats, "eval_repeats": args.eval_repeats, "loss": LOSS},
        "runs": runs, "best": best,
        "ratio_ktune_over_hf": {key: best["ktune"][key] / best["hf"][key] for key in best["ktune"]},
    }


def table(result: dict[str, Any]) -> str:
    best, ratio = result["best"], result["ratio_ktune_over_hf"]
    rows = [[what, best["ktune"][key], best["hf"][key], ratio[key]]
            for what, key in (("training pairs/s", "train_pairs_per_second"),
                              ("evaluation pairs/s", "eval_pairs_per_second"))]
    return markdown_table(["", "ktune-trainer", "transformers.Trainer", "ktune / HF"], rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    markdown = table(result)
    write_results(args.name, result, markdown, args.out_dir)
    print(markdown)


if __name__ == "__main__":
    main()
