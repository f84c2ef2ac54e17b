"""`ktune run --warm-start DIR` and `spec.budget.maxCpuHours` with the stand-in trainer."""

import io
import json
from pathlib import Path

from ktune.algorithms import load_tuningjob
from ktune.cli.main import EXIT_BAD_INPUT, main
from ktune.engine import Engine
from ktune.local.progress import Progress
from ktune.local.runner import LocalRunner, LocalRunOptions, RunOutcome
from ktune.spec import TuningJob

from .jobs import run_locally, stand_in_manifest

TPE = {"name": "tpe", "seed": 5, "options": {"n_startup_trials": 2}}


def run_warm(job: TuningJob, output_dir: Path, warm_start: tuple[Path, ...]) -> tuple[RunOutcome, str]:
    progress = io.StringIO()
    options = LocalRunOptions(output_dir=output_dir, scrape_interval=0.1, grace_period=2.0, poll_interval=0.05,
                         warm_start=warm_start)
    return LocalRunner(job, options, Progress(progress, tty=False)).run(), progress.getvalue()


def test_a_run_warm_started_from_an_earlier_run_imports_its_trials_and_suggests_differently(tmp_path: Path):
    earlier = tmp_path / "earlier"
    first = run_locally(load_tuningjob(stand_in_manifest("earlier", max_trials=4, parallelism=2, steps=1,
                                                         step_seconds=0.05)), earlier)
    assert first.counts["succeeded"] == 4

    manifest = stand_in_manifest("later", max_trials=1, parallelism=1, steps=1, step_seconds=0.05, sampler=TPE)
    narrower = manifest["spec"]["parameters"][0]
    narrower["low"] = min(r.params["x"] for r in first.records) + 1e-9  # the lowest earlier x falls outside
    job = load_tuningjob(manifest)
    outcome, progress = run_warm(job, tmp_path / "later", (earlier,))

    best = json.loads((tmp_path / "later" / "best.json").read_text())
    assert (best["importedTrials"], best["importedTrialsDropped"]) == (3, 1)
    assert [r.number for r in outcome.records] == [0]
    assert f"warm start: imported 3 trials from {earlier} (1 dropped" in progress
    assert "Warm start: 3 imported trials (1 dropped)" in outcome.summary
    cold = Engine(job.spec).ask(now=0.0)
    assert outcome.records[0].params != cold.params


def test_a_cpu_hour_budget_smaller_than_two_trials_stops_the_run_after_the_first(tmp_path: Path):
    manifest = stand_in_manifest("hours", max_trials=5, parallelism=2, steps=2, step_seconds=0.2)
    manifest["spec"]["budget"]["maxCpuHours"] = 1.0e-4  # 0.36 CPU-seconds: less than one trial
    manifest["spec"]["trial"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    outcome = run_locally(load_tuningjob(manifest), tmp_path / "run")

    assert outcome.decision is not None and outcome.decision.reason == "BudgetExhausted"
    assert outcome.decision.succeeded
    assert [r.number for r in outcome.records] == [0]
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["finished"]["reason"] == "BudgetExhausted"
    assert best["cpuHoursUsed"] > 1.0e-4 and best["gpuHoursUsed"] == 0
    assert "CPU-hours used: " in outcome.summary


def test_warm_start_from_a_directory_that_holds_no_run_is_a_clear_error(tmp_path: Path, capsys):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(stand_in_manifest("later", max_trials=1, parallelism=1)))
    code = main(["run", str(job_file), "--output", str(tmp_path / "out"), "--warm-start", str(tmp_path / "nope")])
    assert code == EXIT_BAD_INPUT
    assert f"warm start from {tmp_path / 'nope'}: not a ktune run directory" in capsys.readouterr().err


def test_warm_start_names_in_the_spec_are_read_as_earlier_runs_under_ktune_runs(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_locally(load_tuningjob(stand_in_manifest("earlier", max_trials=2, parallelism=2, steps=1,
                                                 step_seconds=0.05)), Path("ktune-runs") / "earlier")
    manifest = stand_in_manifest("later", max_trials=1, parallelism=1, steps=1, step_seconds=0.05, sampler=TPE)
    manifest["spec"]["warmStart"] = {"from": [{"name": "earlier"}], "enqueue": [{"x": 0.3}]}
    outcome, progress = run_warm(load_tuningjob(manifest), Path("ktune-runs") / "later", ())

    assert "warm start: imported 2 trials from ktune-runs/earlier (0 dropped" in progress
    assert outcome.records[0].params == {"x": 0.3}  # the enqueued configuration runs first
    assert outcome.records[0].metrics["score"] == 1.0
