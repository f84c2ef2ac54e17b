"""TuningJobs whose trials run the stand-in trainer, and helpers to run them and read their outputs."""

import csv
import io
import sys
from pathlib import Path
from typing import Any

from ktune.algorithms import load_tuningjob
from ktune.local.progress import Progress
from ktune.local.runner import LocalRunner, LocalRunOptions, RunOutcome
from ktune.spec import TuningJob

STAND_IN_TRAINER = Path(__file__).resolve().parents[1] / "stand_in_trainer.py"


def stand_in_manifest(
    name: str = "stand-in",
    *,
    max_trials: int = 4,
    parallelism: int = 2,
    retries: int = 0,
    trainer_args: tuple[str, ...] = (),
    steps: int = 3,
    step_seconds: float = 0.2,
    sampler: dict[str, Any] | None = None,
    pruner: dict[str, Any] | None = None,
    goal: float | None = None,
    max_failed_trials: int | None = None,
) -> dict[str, Any]:
    """A TuningJob over one float `x` in [0, 1] whose best value is x = 0.3 (score 1.0)."""
    objective: dict[str, Any] = {"metric": "score", "direction": "maximize"}
    if goal is not None:
        objective["goal"] = goal
    budget: dict[str, Any] = {"maxTrials": max_trials, "parallelism": parallelism}
    if max_failed_trials is not None:
        budget["maxFailedTrials"] = max_failed_trials
    return {
        "apiVersion": "ktune.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": {
            "objective": objective,
            "metrics": ["loss"],
            "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
            "sampler": sampler or {"name": "random", "seed": 11},
            "pruner": pruner or {"name": "none"},
            "budget": budget,
            "trial": {
                "retries": retries,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "trainer",
                                "command": [sys.executable, str(STAND_IN_TRAINER)],
                                "args": [
                                    "--x=$(KTUNE_PARAM_X)",
                                    f"--steps={steps}",
                                    f"--step-seconds={step_seconds}",
                                    *trainer_args,
                                ],
                            }
                        ]
                    }
                },
            },
        },
    }


def stand_in_job(**kwargs: Any) -> TuningJob:
    return load_tuningjob(stand_in_manifest(**kwargs))


def run_locally(job: TuningJob, output_dir: Path, *, resume: bool = False, grace_period: float = 2.0) -> RunOutcome:
    """Run a job in this process with fast scraping; the progress lines are discarded."""
    options = LocalRunOptions(
        output_dir=output_dir, resume=resume, scrape_interval=0.1, grace_period=grace_period, poll_interval=0.05
    )
    return LocalRunner(job, options, Progress(io.StringIO(), tty=False)).run()


def read_trials_csv(output_dir: Path) -> list[dict[str, str]]:
    with (output_dir / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def launch_events(path: Path) -> list[tuple[str, int, int, float]]:
    """The stand-in trainer's launch log: (event, trial number, attempt, x) in the order they happened."""
    events = []
    for line in path.read_text().splitlines():
        event, number, attempt, x = line.split()
        events.append((event, int(number), int(attempt), float(x)))
    return events
