"""A trainer that reports only by printing, as Katib's StdOut collector expects: `epoch=1 ndcg_at_10=0.31` lines.

It writes no result and serves no `/metrics`. Its parameter `x` comes from `KTUNE_PARAM_X`; at epoch e of `--epochs`
it prints `ndcg_at_10 = (1 - (x - 0.3)^2) * e / epochs` (best at x = 0.3, a bad x behind a good one at every epoch,
so the median pruner stops it), and with flags the bad input a log source must survive.

Run it as `python tests/log_trainer.py --epochs 4 --json`.
"""

import argparse
import json
import os
import sys
import time


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-seconds", type=float, default=0.5)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of name=value pairs")
    parser.add_argument("--garbage", action="store_true", help="print lines that are no metrics between epochs")
    parser.add_argument("--nan", action="store_true", help="report NaN at the last epoch")
    parser.add_argument("--long-line", type=int, default=0, help="print one line of this many characters first")
    parser.add_argument("--names", type=int, default=0, help="print this many distinct extra metric names first")
    args = parser.parse_args(argv)
    x = float(os.environ["KTUNE_PARAM_X"])
    score = 1.0 - (x - 0.3) ** 2
    if args.long_line:
        print("step=0 noise=" + "9" * args.long_line, flush=True)
    for start in range(0, args.names, 500):
        print(" ".join(f"name_{i}=1" for i in range(start, min(start + 500, args.names))), flush=True)
    for epoch in range(1, args.epochs + 1):
        value = score * epoch / args.epochs
        if args.nan and epoch == args.epochs:
            value = float("nan")
        if args.garbage:
            print(f"=== epoch {epoch} === }}{{ [not json] loss: n/a\x1b[0m", flush=True)
        if args.json:
            print(json.dumps({"epoch": epoch, "ndcg_at_10": value, "loss": 1 - value}), flush=True)
        else:
            print(f"epoch={epoch} ndcg_at_10={value:.6f} loss={1 - value:.6f}", flush=True)
        if epoch < args.epochs:
            time.sleep(args.epoch_seconds)


if __name__ == "__main__":
    main(sys.argv[1:])


def log_job(name: str, *trainer_args: str, epochs: int = 4, epoch_seconds: float = 0.5,
            xs: tuple[float, ...] = (0.3, 0.35, 0.95, 1.0), **source: str) -> dict:
    """A TuningJob whose trials run this trainer and whose metrics come from their logs: the trials run the `xs` in
    order (warm-start enqueue), one at a time, under the median pruner after two complete trials, so that with
    the defaults the first two succeed (x = 0.3 best, ndcg_at_10 1.0) and the last two are pruned."""
    return {
        "apiVersion": "ktune.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "ndcg_at_10", "direction": "maximize"},
            "metrics": ["loss"],
            "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
            "sampler": {"name": "random", "seed": 3},
            "pruner": {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 0}},
            "budget": {"maxTrials": len(xs), "parallelism": 1},
            "warmStart": {"enqueue": [{"x": x} for x in xs]},
            "metricsSource": {"type": "logs", "stepMetric": "epoch", **source},
            "trial": {"template": {"spec": {"containers": [{
                "name": "trainer",
                "image": "ktune/log-trainer:test",  # ignored by ktune run and the test node agent
                "command": [sys.executable, __file__],
                "args": [f"--epochs={epochs}", f"--epoch-seconds={epoch_seconds}", *trainer_args],
            }]}}},
        },
    }
