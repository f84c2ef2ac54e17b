"""A tiny trainer that honours the ktune trainer contract, for tests that need trials but not torch.

It reads its parameter `x` (from `--x` or `KTUNE_PARAM_X`), serves
`ktune_trial_metric{metric=...}` and `ktune_trial_step` on KTUNE_METRICS_HOST:KTUNE_METRICS_PORT,
reports `score = 1 - (x - 0.3)**2` scaled by progress (step / steps) for `--steps` steps with a
short sleep between them, so that a bad `x` is behind a good one at every step (median pruning
stops it), and finally writes `{score, loss, test_score}` as JSON to KTUNE_RESULT_PATH (with
`completion_index` in a pod of an Indexed Job, from JOB_COMPLETION_INDEX).
Flags make it fail, crash, ignore SIGTERM or report NaN, for the runner's failure paths.

Run it as `python tests/stand_in_trainer.py --steps 4 ...`.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, start_http_server


def score(x: float) -> float:
    """The known objective: best at x = 0.3, where it is 1.0."""
    return 1.0 - (x - 0.3) ** 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--x", type=float, help="the parameter (default: KTUNE_PARAM_X)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, default=0.3)
    parser.add_argument("--metric", default="score", help="name of the objective metric")
    parser.add_argument("--fail-above", type=float, help="exit 1 (after training) when x is above this")
    parser.add_argument("--fail-attempts", type=int, default=0, help="the first N attempts of each trial exit 3")
    parser.add_argument("--state-dir", type=Path, help="where attempts are counted (needed by --fail-attempts)")
    parser.add_argument(
        "--launch-log", type=Path, help="append 'start NUMBER ATTEMPT X' at launch and 'end NUMBER ATTEMPT X' at exit"
    )
    parser.add_argument("--nan", action="store_true", help="report NaN as the final objective")
    parser.add_argument("--no-result", action="store_true", help="write no result file")
    parser.add_argument("--junk-result", action="store_true", help="write a result file that is not JSON")
    parser.add_argument("--ignore-sigterm", action="store_true", help="keep running when told to stop")
    return parser.parse_args(argv)


def count_attempt(state_dir: Path, number: str) -> int:
    """This trial's attempt number (1 for the first launch), counted in files under ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / f"trial-{number}.attempts"
    attempt = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempt))
    return attempt


def log_event(path: Path | None, event: str, number: str, attempt: int, x: float) -> None:
    if path is not None:
        with path.open("a") as log:
            log.write(f"{event} {number} {attempt} {x!r}\n")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    x = args.x if args.x is not None else float(os.environ["KTUNE_PARAM_X"])
    number = os.environ.get("KTUNE_TRIAL_NUMBER", "?")
    attempt = count_attempt(args.state_dir, number) if args.state_dir else 1
    log_event(args.launch_log, "start", number, attempt, x)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    registry = CollectorRegistry()
    metric = Gauge("ktune_trial_metric", "trial metric", ["metric"], registry=registry)
    step_gauge = Gauge("ktune_trial_step", "step of the latest values", registry=registry)
    host = os.environ.get("KTUNE_METRICS_HOST", "127.0.0.1")
    start_http_server(int(os.environ.get("KTUNE_METRICS_PORT", "9100")), addr=host, registry=registry)
    print(f"stand-in trial {number} attempt {attempt}: x={x}", flush=True)

    if attempt <= args.fail_attempts:
        print("failing this attempt on purpose", file=sys.stderr, flush=True)
        return 3
    final = score(x)
    for step in range(1, args.steps + 1):
        time.sleep(args.step_seconds)
        metric.labels(args.metric).set(final * step / args.steps)
        metric.labels("loss").set(1.0 - final * step / args.steps)
        step_gauge.set(step)
    # Stay up a moment so the last step is scraped, as a real trainer's evaluation would be.
    time.sleep(args.step_seconds)
    if args.fail_above is not None and x > args.fail_above:
        print(f"x={x} is above {args.fail_above}: failing", file=sys.stderr, flush=True)
        return 1
    result_path = os.environ.get("KTUNE_RESULT_PATH")
    if result_path and not args.no_result:
        text = "not json {" if args.junk_result else json.dumps(
            {args.metric: float("nan") if args.nan else final, "loss": 1.0 - final, "test_score": final - 0.01}
        )
        if "JOB_COMPLETION_INDEX" in os.environ and not args.junk_result:  # a pod of a Job trial: which one wrote
            text = json.dumps({**json.loads(text), "completion_index": float(os.environ["JOB_COMPLETION_INDEX"])})
        Path(result_path).write_text(text)
    log_event(args.launch_log, "end", number, attempt, x)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
