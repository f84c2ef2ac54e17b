"""``ktune-trainer``: make-data, train and baseline.

Exit codes: 0 done; 2 bad input (data, model, flags); 3 the loss became NaN/inf; 128 + signal
number when stopped by SIGTERM (143) or SIGINT (130).
``train`` runs distributed (DistributedDataParallel) when a launcher such as ``torchrun`` sets
``WORLD_SIZE`` > 1: then a signal or a non-finite loss on any rank ends every rank with that exit code,
and only rank 0 serves ``/metrics`` and writes the result.
Every training flag left off the command line is read from ``KTUNE_PARAM_<FLAG>`` (for example
``--learning-rate`` from ``KTUNE_PARAM_LEARNING_RATE``), so a TuningJob may pass parameters
either way. torch and transformers are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ktune_trainer.data import DataError, load_data, write_rows
from ktune_trainer.distributed import LaunchError, Stopped, World, install_signal_handlers
from ktune_trainer.report import ReportError, TrialReporter, param_env_name

if TYPE_CHECKING:  # imports torch: only the commands that train import it at run time
    from ktune_trainer.training import TrainingConfig

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
LOSS_CHOICES = ("pointwise-bce", "pointwise-mse", "listwise")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEFAULT_DATA = "synthetic:queries=400,seed=1"


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def _positive_int(text: str) -> int:
    number = float(text)  # tuners may send integers as "32.0"
    if not number.is_integer() or number < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return int(number)


def _non_negative_float(text: str) -> float:
    number = float(text)
    if not number >= 0:
        raise ValueError(f"expected a number >= 0, got {text!r}")
    return number


def _ratio(text: str) -> float:
    number = float(text)
    if not 0 <= number < 1:
        raise ValueError(f"expected a number in [0, 1), got {text!r}")
    return number


def _learning_rate(text: str) -> float:
    number = float(text)
    if not number > 0:
        raise ValueError(f"expected a number > 0, got {text!r}")
    return number


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _add_data_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help=f"a .parquet/.csv/.jsonl file (ESCI columns), a directory holding one, or "
        f"synthetic:queries=N,seed=S (default: {DEFAULT_DATA})",
    )


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", default="tiny-bert", help="tiny-bert, a Hugging Face model name, or a local model directory")
    add("--learning-rate", type=_learning_rate, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    add("--batch-size", type=_positive_int, default=32, help="pairs per step; listwise: whole queries (default 32)")
    add("--epochs", type=_positive_int, default=3, help="passes over the training pairs (default 3)")
    add("--warmup-ratio", type=_ratio, default=0.1, help="share of steps warming up the learning rate (default 0.1)")
    add("--weight-decay", type=_non_negative_float, default=0.01, help="AdamW weight decay (default 0.01)")
    add(
        "--dropout",
        type=_ratio,
        default=None,
        help="hidden and attention dropout (default: the model's; tiny-bert 0.1)",
    )
    add("--max-length", type=_positive_int, default=128, help="tokens per (query, product) pair (default 128)")
    add("--max-grad-norm", type=_non_negative_float, default=1.0, help="gradient clipping norm, 0 = off (default 1.0)")
    add("--loss", choices=LOSS_CHOICES, default="listwise", help="training loss (default listwise)")
    add("--seed", type=int, default=42, help="seed of initialisation, shuffling and sampling (default 42)")
    add("--eval-steps", type=_positive_int, default=None, help="also evaluate every N optimizer steps")
    add("--device", choices=DEVICE_CHOICES, default="auto", help="auto = CUDA when available (default auto)")
    add("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on CUDA)")
    add("--max-train-pairs", type=_positive_int, default=None, help="train on whole queries up to N pairs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ktune-trainer", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    make_data = commands.add_parser("make-data", help="write a synthetic ESCI-style data set")
    make_data.add_argument("--out", required=True, type=Path, help="directory to write esci.<format> into")
    make_data.add_argument("--queries", type=_positive_int, default=400, help="number of queries (default 400)")
    make_data.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    make_data.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet")

    train = commands.add_parser("train", help="fine-tune a cross-encoder ranker and report metrics")
    _add_data_flag(train)
    _add_training_flags(train)
    train.add_argument("--output-dir", type=Path, default=None, help="save the fine-tuned model and tokenizer here")

    baseline = commands.add_parser("baseline", help="metrics of random order, BM25 and the untrained model")
    _add_data_flag(baseline)
    _add_training_flags(baseline)
    baseline.add_argument("--split", choices=("validation", "test"), default="validation")
    return parser


def apply_param_env(parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """Makes ``KTUNE_PARAM_<FLAG>`` the default of every flag of the chosen command.

    A flag given on the command line still wins. Values are checked like command-line values
    and a bad one is reported naming the variable.
    """
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = next((arg for arg in argv if arg in subparsers.choices), None)
    if command is None:
        return
    subparser = subparsers.choices[command]
    defaults: dict[str, Any] = {}
    for action in subparser._actions:
        if not action.option_strings or action.dest in ("help", "out", "split"):
            continue
        variable = param_env_name(action.dest)
        if variable not in environ:
            continue
        raw = environ[variable]
        try:
            if isinstance(action, argparse.BooleanOptionalAction):
                value: Any = _boolean(raw)
            elif action.type is not None:
                value = action.type(raw)
            else:
                value = raw
        except (TypeError, ValueError) as error:
            parser.exit(EXIT_BAD_INPUT, f"ktune-trainer: {variable}={raw!r}: {error}\n")
        if action.choices is not None and value not in action.choices:
            parser.exit(EXIT_BAD_INPUT, f"ktune-trainer: {variable}={raw!r}: choose from {', '.join(action.choices)}\n")
        defaults[action.dest] = value
    subparser.set_defaults(**defaults)


def training_config(args: argparse.Namespace) -> TrainingConfig:
    from ktune_trainer.training import TrainingConfig

    return TrainingConfig(
        model=args.model,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        max_length=args.max_length,
        max_grad_norm=args.max_grad_norm,
        loss=args.loss,
        seed=args.seed,
        eval_steps=args.eval_steps,
        device=args.device,
        bf16=args.bf16,
        max_train_pairs=args.max_train_pairs,
        output_dir=getattr(args, "output_dir", None),
    )


def run_make_data(args: argparse.Namespace) -> int:
    from ktune_trainer.synthetic import generate

    if args.queries < 10:
        raise DataError(f"--queries {args.queries}: need at least 10 to fill train, validation and test")
    rows = generate(args.queries, args.seed)
    path = args.out / f"esci.{args.format}"
    write_rows(rows, path)
    print(f"wrote {len(rows)} judged pairs for {args.queries} queries to {path}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    world = World.from_env()
    install_signal_handlers(world)  # main() restores the previous handlers
    reporter = TrialReporter.from_env()
    data = load_data(args.data)
    from ktune_trainer.training import train  # torch: after the cheap checks

    if world.is_main:
        reporter.start_server()
    try:
        result = train(training_config(args), data, reporter.report, world)
    finally:
        reporter.stop_server()
    if world.is_main:
        print(reporter.write_result(result))
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    from ktune_trainer.baseline import baseline_metrics

    data = load_data(args.data)
    results = baseline_metrics(data.split(args.split), args.seed)
    from ktune_trainer.training import untrained_metrics

    untrained = untrained_metrics(training_config(args), data, args.split)
    results[f"untrained {args.model}"] = {name: value for name, value in untrained.items() if name != "eval_loss"}
    names = list(results["bm25"])
    print(f"{args.split} split of {data.source}: {len(data.split(args.split))} queries")
    print(f"{'ranker':<22}" + "".join(f"{name:>14}" for name in names))
    for ranker, metrics in results.items():
        print(f"{ranker:<22}" + "".join(f"{metrics[name]:>14.4f}" for name in names))
    print(json.dumps({ranker: {k: round(v, 4) for k, v in m.items()} for ranker, m in results.items()}))
    return 0


COMMANDS = {"make-data": run_make_data, "train": run_train, "baseline": run_baseline}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    apply_param_env(parser, argv, os.environ)
    args = parser.parse_args(argv)
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    from ktune_trainer.model import ModelError

    try:
        return COMMANDS[args.command](args)
    except (DataError, LaunchError, ModelError, ReportError) as error:
        print(f"ktune-trainer {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as stop:
        where = "" if stop.rank is None else f" sent to rank {stop.rank}"
        print(f"ktune-trainer {args.command}: stopped by {signal.Signals(stop.signum).name}{where}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as error:
        return _known_failure(args.command, error)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _known_failure(command: str, error: Exception) -> int:
    """Exit codes for failures that are the run's outcome rather than a bug (re-raises the rest)."""
    from ktune_trainer.training import NonFiniteLoss

    if isinstance(error, NonFiniteLoss):
        print(f"ktune-trainer {command}: {error}", file=sys.stderr)
        return EXIT_NON_FINITE
    raise error


if __name__ == "__main__":
    sys.exit(main())
