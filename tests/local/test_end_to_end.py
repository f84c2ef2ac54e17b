"""One real `ktune run`: the reference trainer (`ktune-trainer train --model tiny-bert`, synthetic data) as trial
processes, interrupted with Ctrl-C and finished with --resume.

The job is a 6-point grid over epochs x learning rate with a threshold pruner no ranking can pass
(NDCG@10 >= 1.01) once a trial is past its warm-up step, so what happens is known in advance and
independent of how well tiny-bert learns: 1-epoch trials report step 1 only and succeed; 3-epoch trials
are pruned when the scrape of their `/metrics` sees step 2.
"""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from .jobs import read_trials_csv

KTUNE = [sys.executable, "-m", "ktune.cli"]

JOB = {
    "apiVersion": "ktune.dev/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "tiny-end-to-end"},
    "spec": {
        "objective": {"metric": "ndcg_at_10", "direction": "maximize"},
        "metrics": ["mrr_at_10", "eval_loss"],
        "parameters": [
            {"name": "epochs", "type": "categorical", "choices": [1, 3]},
            {"name": "learning_rate", "type": "categorical", "choices": [3.0e-4, 1.0e-3, 3.0e-3]},
        ],
        "sampler": {"name": "grid", "seed": 1},
        "pruner": {"name": "threshold", "options": {"lower": 1.01, "n_warmup_steps": 2}},
        "budget": {"maxTrials": 6, "parallelism": 2},
        "trial": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "trainer",
                            "command": ["ktune-trainer", "train"],
                            "args": [
                                "--model=tiny-bert",
                                "--data=synthetic:queries=40,seed=1",
                                "--max-length=32",
                                "--batch-size=16",
                                "--epochs=$(KTUNE_PARAM_EPOCHS)",
                                "--learning-rate=$(KTUNE_PARAM_LEARNING_RATE)",
                            ],
                            "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                        }
                    ]
                }
            }
        },
    },
}


def attempts_started(output: Path) -> dict[int, int]:
    """How many attempts each trial's log shows (the runner writes a header line per attempt)."""
    return {
        int(log.parent.name): len(re.findall(r"^=== trial \d+ attempt", log.read_text(), flags=re.MULTILINE))
        for log in (output / "trials").glob("*/log.txt")
    }


def finished_trials(output: Path) -> set[int]:
    if not (output / "trials.csv").exists():
        return set()
    return {int(row["number"]) for row in read_trials_csv(output) if row["state"] != "Running"}


@pytest.mark.slow
def test_ktune_run_tunes_the_real_trainer_prunes_through_metrics_and_resumes_after_ctrl_c(tmp_path: Path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(JOB))
    output = tmp_path / "run"
    command = [*KTUNE, "run", str(job), "--output", str(output), "--scrape-interval", "0.5", "--grace-period", "5"]

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while len(finished_trials(output)) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    printed = first.communicate(timeout=120)[0]
    assert first.returncode == 130, printed
    finished_before = finished_trials(output)
    attempts_before = attempts_started(output)
    assert len(finished_before) >= 2, printed

    second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr

    rows = read_trials_csv(output)
    assert [int(row["number"]) for row in rows] == list(range(6))
    attempts_after = attempts_started(output)
    for number in finished_before:
        assert attempts_after[number] == attempts_before[number], f"finished trial {number} ran again"
    states = {(row["param_epochs"], row["state"]) for row in rows}
    assert states == {("1", "Succeeded"), ("3", "Pruned")}, rows
    params = {(row["param_epochs"], row["param_learning_rate"]) for row in rows}
    assert len(params) == 6, "every grid point exactly once"

    # Pruned from what the scrape saw: Optuna holds step 2 of every pruned trial, and no step 3.
    storage = JournalStorage(JournalFileBackend(str(output / "optuna-journal.log")))
    study = optuna.load_study(study_name="tiny-end-to-end", storage=storage)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == 3
    assert all(2 in t.intermediate_values and 3 not in t.intermediate_values for t in pruned)

    best = json.loads((output / "best.json").read_text())["bestTrial"]
    assert best["params"]["epochs"] == 1
    assert 0.0 < best["value"] <= 1.0
    for metric in ("ndcg_at_10", "mrr_at_10", "eval_loss", "test_ndcg_at_10"):
        assert metric in best["metrics"]
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (output / "plots" / f"{plot}.png").exists()
    assert re.search(r"\n  ndcg_at_10 +[0-9.]+ +[0-9.]+\n", second.stdout), "validation and test NDCG@10"
    assert "3 pruned" in second.stdout
