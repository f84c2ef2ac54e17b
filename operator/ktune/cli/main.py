"""The `ktune` command line.

Each subcommand is one `add_<name>_command(subcommands)` function that declares its arguments and
sets `handler` (a function of the parsed arguments returning the exit code); `COMMANDS` lists them.
Adding a subcommand is one such function and one entry in `COMMANDS`. Handlers import what they
need when they run, so `ktune --help` stays fast.

Exit codes of `run`: 0 done, 1 the job finished without success (e.g. too many failed trials),
2 bad input (the problems are printed, never a traceback), 130 interrupted. `validate`: 0 all valid, 1 not.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ktune import __version__
from ktune.cli import cluster_commands, logs

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# What `add_subparsers()` returns; each add_<name>_command function adds its parser to it.
Subcommands = argparse._SubParsersAction


def add_run_command(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "run",
        help="tune a TuningJob on this machine, one local process per trial",
        description="Run a TuningJob's trials as local processes (the embedded default: no cluster needed).",
    )
    parser.add_argument("file", type=Path, help="the TuningJob YAML file")
    parser.add_argument(
        "--output", type=Path, help="where results go (default: ./ktune-runs/<job name>)"
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in the output directory: finished trials are kept, interrupted ones rerun",
    )
    parser.add_argument(
        "--warm-start", type=Path, action="append", default=[], metavar="DIR",
        help="seed the search with the finished trials of an earlier run's directory (e.g. ktune-runs/<job>); "
             "repeatable",
    )
    parser.add_argument(
        "--scrape-interval", type=float, default=2.0, metavar="SECONDS",
        help="seconds between two scrapes of a trial's /metrics (default: 2)",
    )
    parser.add_argument(
        "--grace-period", type=float, default=10.0, metavar="SECONDS",
        help="seconds a stopped trial gets between SIGTERM and SIGKILL (default: 10)",
    )
    parser.set_defaults(handler=run_job)


def run_job(args: argparse.Namespace) -> int:
    from ktune.algorithms import load_local_tuningjob
    from ktune.local.processes import LocalTemplateError
    from ktune.local.progress import Progress
    from ktune.local.run_directory import RunDirectoryError
    from ktune.local.runner import LocalRunner, LocalRunOptions
    from ktune.spec import SpecError

    try:
        job = load_local_tuningjob(args.file)
    except SpecError as error:
        return _print_problems(args.file, error.problems)
    if job.spec.suspend:
        return _print_problems(args.file, ["spec.suspend: true pauses the job, so there is nothing to run; set it "
                                           "to false (or remove it) to run the job"])
    options = LocalRunOptions(
        output_dir=args.output or Path("ktune-runs") / job.name,
        resume=args.resume,
        scrape_interval=args.scrape_interval,
        grace_period=args.grace_period,
        warm_start=tuple(args.warm_start),
    )
    try:
        runner = LocalRunner(job, options, Progress(sys.stdout))
        outcome = runner.run()
    except LocalTemplateError as error:
        return _print_problems(args.file, error.problems)
    except RunDirectoryError as error:
        return _print_problems(options.output_dir, [str(error)])
    except KeyboardInterrupt:  # a Ctrl-C after the trials were stopped, while results were being written
        print(f"\nInterrupted while writing results; trials.csv and the journal in {options.output_dir} are kept.")
        return EXIT_INTERRUPTED
    print()
    print(outcome.summary)
    for note in outcome.plot_notes:
        print(f"plot skipped: {note}")
    journal = options.output_dir / "optuna-journal.log"
    print(f"Results: {options.output_dir}/ (trials.csv, best.json, plots/, trials/<n>/log.txt)")
    print(f"Dashboard: optuna-dashboard {journal}")
    if outcome.decision is None:  # interrupted
        print(f"Interrupted. Continue with: ktune run {args.file} --resume" + (
            f" --output {args.output}" if args.output else ""
        ))
        return EXIT_INTERRUPTED
    return EXIT_OK if outcome.decision.succeeded else EXIT_JOB_FAILED


def add_validate_command(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "validate", help="check TuningJob files and list every problem",
        description="Check TuningJob files; prints every problem with the field it concerns.",
    )
    parser.add_argument("files", type=Path, nargs="+", help="TuningJob YAML files")
    parser.set_defaults(handler=validate_files)


def validate_files(args: argparse.Namespace) -> int:
    from ktune import algorithms

    return algorithms.validate_files(args.files)


def _print_problems(source: object, problems: Sequence[str]) -> int:
    for problem in problems:
        print(f"{source}: {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT


def add_import_katib_command(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "import-katib", help="convert a Katib v1beta1 Experiment into a TuningJob",
        description="Print the TuningJob made from a Katib Experiment; what could not be carried over goes to stderr.",
    )
    parser.add_argument("file", type=Path, help="Katib Experiment YAML file")
    parser.set_defaults(handler=import_katib)


def import_katib(args: argparse.Namespace) -> int:
    from ktune.cli import katib

    return katib.import_katib(str(args.file), sys.stdout, sys.stderr)


COMMANDS: list[Callable[[Subcommands], None]] = [add_run_command, add_validate_command, add_import_katib_command]
# The cluster subcommands (operator, status, export) live with the operator; logs has its own module.
COMMANDS += cluster_commands.COMMANDS + logs.COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktune", description="Hyperparameter tuning for BERT ranking models, locally or on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"ktune {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS:
        add_command(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)

