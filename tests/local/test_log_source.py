"""`ktune run` with `metricsSource: {type: logs}`: metrics from what the trial processes print, nothing else."""

import io
import json
from pathlib import Path

import pytest

from ktune.algorithms import load_tuningjob
from ktune.local.progress import Progress
from ktune.local.runner import LocalRunner, LocalRunOptions
from ktune.log_metrics import MAX_LINE_CHARS, MAX_NAMES
from tests.local.jobs import read_trials_csv, run_locally
from tests.log_trainer import log_job


def test_a_trainer_that_only_prints_is_tuned_and_pruned(tmp_path: Path) -> None:
    outcome = run_locally(load_tuningjob(log_job("printing")), tmp_path)
    assert outcome.decision is not None and not outcome.interrupted
    rows = {int(row["number"]): row for row in read_trials_csv(tmp_path)}
    assert [rows[n]["state"] for n in range(4)] == ["Succeeded", "Succeeded", "Pruned", "Pruned"]
    assert float(rows[0]["ndcg_at_10"]) == pytest.approx(1.0)  # the last epoch's value: the log's last line
    assert float(rows[1]["ndcg_at_10"]) == pytest.approx(1 - 0.05**2)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["bestTrial"]["number"] == 0


@pytest.mark.parametrize(("bad", "warning"), [
    (("--garbage",), None),
    (("--json", "--garbage"), None),
    (("--long-line=1000000",), f"ignored a log line longer than {MAX_LINE_CHARS} characters"),
    (("--names=10000",), f"ignored metric names beyond the first {MAX_NAMES} distinct ones"),
])
def test_bad_lines_are_ignored_and_the_job_still_finds_the_best(tmp_path: Path, bad: tuple[str, ...],
                                                                warning: str | None) -> None:
    output = io.StringIO()
    options = LocalRunOptions(output_dir=tmp_path, scrape_interval=0.1, grace_period=2.0, poll_interval=0.05)
    outcome = LocalRunner(load_tuningjob(log_job("noisy", *bad, xs=(0.3, 0.9), epochs=2)), options,
                          Progress(output, tty=False)).run()
    rows = {int(row["number"]): row for row in read_trials_csv(tmp_path)}
    assert outcome.decision is not None
    assert rows[0]["state"] == "Succeeded" and float(rows[0]["ndcg_at_10"]) == pytest.approx(1.0)
    assert len(rows[0]) <= 5 + 1 + 2 + MAX_NAMES + 1  # number..duration, x, the own and kept names, message
    warnings = [line for line in output.getvalue().splitlines() if "warning: trial" in line]
    if warning is None:
        assert warnings == []
    else:
        assert any(warning in line for line in warnings), output.getvalue()


def test_nan_as_the_last_value_fails_the_trial_as_an_invalid_objective(tmp_path: Path) -> None:
    run_locally(load_tuningjob(log_job("nan", "--json", "--nan", xs=(0.3,), epochs=2)), tmp_path)
    (row,) = read_trials_csv(tmp_path)
    assert (row["state"], row["reason"]) == ("Failed", "InvalidObjective")
