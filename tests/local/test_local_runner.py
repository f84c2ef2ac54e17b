"""The local runner driving the real engine, with the stand-in trainer as trial processes."""

import json
import re
from pathlib import Path

import pytest

from ktune.algorithms import load_tuningjob as load_job
from ktune.engine import TrialState
from ktune.local.processes import LocalTemplateError, TrialProcess
from ktune.local.run_directory import RunDirectoryError

from .jobs import launch_events, read_trials_csv, run_locally, stand_in_job, stand_in_manifest


def max_concurrency(events: list[tuple[str, int, int, float]]) -> int:
    running, most = 0, 0
    for event, *_ in events:
        running += 1 if event == "start" else -1
        most = max(most, running)
    return most


def test_no_more_trials_run_at_once_than_parallelism_allows(tmp_path: Path):
    log = tmp_path / "launches.log"
    job = stand_in_job(max_trials=5, parallelism=2, trainer_args=(f"--launch-log={log}",))
    outcome = run_locally(job, tmp_path / "run")
    assert outcome.decision is not None and outcome.decision.reason == "MaxTrialsReached"
    assert outcome.counts["succeeded"] == 5
    assert max_concurrency(launch_events(log)) == 2


def test_every_trial_writes_its_results_logs_and_plots(tmp_path: Path):
    outcome = run_locally(stand_in_job(max_trials=3, parallelism=1), tmp_path / "run")
    run_dir = tmp_path / "run"
    rows = read_trials_csv(run_dir)
    assert [row["number"] for row in rows] == ["0", "1", "2"]
    assert all(row["state"] == "Succeeded" and float(row["test_score"]) < float(row["score"]) for row in rows)
    best = json.loads((run_dir / "best.json").read_text())
    best_row = max(rows, key=lambda row: float(row["score"]))
    assert best["bestTrial"]["number"] == int(best_row["number"])
    assert best["bestTrial"]["metrics"]["test_score"] == pytest.approx(float(best_row["test_score"]))
    assert best["finished"]["reason"] == "MaxTrialsReached"
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (run_dir / "plots" / f"{plot}.png").stat().st_size > 1000
    assert "stand-in trial 2 attempt 1" in (run_dir / "trials" / "0002" / "log.txt").read_text()
    assert (run_dir / "optuna-journal.log").stat().st_size > 0
    assert f"Best trial {best_row['number']}" in outcome.summary
    assert re.search(r"\n  score +[0-9.]+ +[0-9.]+\n", outcome.summary), "score with validation and test values"


def test_a_failed_attempt_is_retried_under_the_same_number_with_the_same_params(tmp_path: Path):
    log = tmp_path / "launches.log"
    args = ("--fail-attempts=1", f"--state-dir={tmp_path / 'state'}", f"--launch-log={log}")
    outcome = run_locally(stand_in_job(max_trials=2, retries=1, trainer_args=args), tmp_path / "run")
    assert outcome.counts["succeeded"] == 2
    starts = [(number, attempt, x) for event, number, attempt, x in launch_events(log) if event == "start"]
    for number in (0, 1):
        attempts = [(attempt, x) for n, attempt, x in starts if n == number]
        assert [attempt for attempt, _ in attempts] == [1, 2]
        assert attempts[0][1] == attempts[1][1]
    assert [row["attempts"] for row in read_trials_csv(tmp_path / "run")] == ["2", "2"]


def test_trials_that_keep_failing_are_counted_and_stop_the_job(tmp_path: Path):
    job = stand_in_job(max_trials=6, parallelism=1, retries=1, max_failed_trials=2,
                       trainer_args=("--fail-above=-1",))  # every x fails
    outcome = run_locally(job, tmp_path / "run")
    assert outcome.decision is not None and outcome.decision.reason == "TooManyFailedTrials"
    assert not outcome.decision.succeeded
    failed = [record for record in outcome.records if record.state == TrialState.FAILED]
    assert len(failed) == 2 and len(outcome.records) == 2
    assert all(record.reason == "Error" and "exit code 1" in record.message for record in failed)
    assert [row["attempts"] for row in read_trials_csv(tmp_path / "run")] == ["2", "2"]


def test_reaching_the_goal_stops_the_job_before_max_trials(tmp_path: Path):
    outcome = run_locally(stand_in_job(max_trials=20, parallelism=1, goal=0.0), tmp_path / "run")
    assert outcome.decision is not None and outcome.decision.reason == "GoalReached"
    assert outcome.counts["succeeded"] == 1 and len(outcome.records) == 1


def test_trials_behind_the_median_are_pruned_through_their_metrics_endpoint(tmp_path: Path):
    log = tmp_path / "launches.log"
    job = stand_in_job(
        max_trials=10, parallelism=1, steps=6, step_seconds=0.25, trainer_args=(f"--launch-log={log}",),
        pruner={"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 0}},
    )
    outcome = run_locally(job, tmp_path / "run")
    pruned = [record for record in outcome.records if record.state == TrialState.PRUNED]
    assert pruned, [(r.number, r.params, r.state) for r in outcome.records]
    succeeded = [record for record in outcome.records if record.state == TrialState.SUCCEEDED]
    best_score = max(record.values[0] for record in succeeded)
    ended = {number for event, number, *_ in launch_events(log) if event == "end"}
    for record in pruned:
        assert record.intermediate, "pruning decided from scraped intermediate values"
        assert max(record.intermediate) < 6, "pruned before its last step"
        assert record.number not in ended, "the pruned process was stopped before it finished"
        assert 1 - (record.params["x"] - 0.3) ** 2 < best_score


def test_a_result_file_that_is_not_json_fails_the_trial_with_a_clear_reason(tmp_path: Path):
    outcome = run_locally(stand_in_job(max_trials=1, parallelism=1, trainer_args=("--junk-result",)), tmp_path / "r")
    (record,) = outcome.records
    assert record.state == TrialState.FAILED
    assert record.reason == "InvalidResult"
    assert "result.json" in record.message and "not JSON" in record.message


def test_a_nan_objective_fails_the_trial(tmp_path: Path):
    outcome = run_locally(stand_in_job(max_trials=1, parallelism=1, trainer_args=("--nan",)), tmp_path / "r")
    (record,) = outcome.records
    assert record.state == TrialState.FAILED


def test_without_a_result_file_the_last_scraped_metrics_are_final(tmp_path: Path):
    outcome = run_locally(stand_in_job(max_trials=1, parallelism=1, trainer_args=("--no-result",)), tmp_path / "r")
    (record,) = outcome.records
    assert record.state == TrialState.SUCCEEDED
    assert record.values[0] == pytest.approx(1 - (record.params["x"] - 0.3) ** 2)


def test_container_env_is_expanded_in_order_after_the_contract_variables(tmp_path: Path):
    manifest = stand_in_manifest(max_trials=1, parallelism=1)
    container = manifest["spec"]["trial"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "DOUBLE_X", "value": "$(KTUNE_PARAM_X)"}, {"name": "ARG", "value": "--x=$(DOUBLE_X)"}]
    container["args"] = ["$(ARG)", "--steps=1", "--step-seconds=0.05", "--launch-log=$(LOG)"]
    container["env"].append({"name": "LOG", "value": str(tmp_path / "launches.log")})
    outcome = run_locally(load_job(manifest), tmp_path / "run")
    (record,) = outcome.records
    assert record.state == TrialState.SUCCEEDED
    ((_, number, _, x), *_) = launch_events(tmp_path / "launches.log")
    assert (number, x) == (0, record.params["x"])


def test_value_from_in_the_container_env_is_refused_with_the_field_named(tmp_path: Path):
    manifest = stand_in_manifest()
    container = manifest["spec"]["trial"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    with pytest.raises(LocalTemplateError, match=r"containers\[0\]\.env\[0\] \(TOKEN\): valueFrom is not supported"):
        run_locally(load_job(manifest), tmp_path / "run")


def test_a_command_that_does_not_exist_is_refused_before_any_trial_starts(tmp_path: Path):
    manifest = stand_in_manifest()
    manifest["spec"]["trial"]["template"]["spec"]["containers"][0]["command"] = ["no-such-trainer"]
    with pytest.raises(LocalTemplateError, match="'no-such-trainer' is not found on PATH"):
        run_locally(load_job(manifest), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_second_run_into_the_same_directory_needs_resume(tmp_path: Path):
    job = stand_in_job(max_trials=1, parallelism=1)
    run_locally(job, tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="--resume"):
        run_locally(job, tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="nothing to resume"):
        run_locally(job, tmp_path / "elsewhere", resume=True)
    changed = stand_in_job(max_trials=1, parallelism=1, goal=0.5)
    with pytest.raises(RunDirectoryError, match=r"spec\.objective changed"):
        run_locally(changed, tmp_path / "run", resume=True)


def test_resuming_a_finished_run_with_a_larger_budget_adds_only_new_trials(tmp_path: Path):
    log = tmp_path / "launches.log"
    first = run_locally(stand_in_job(max_trials=2, trainer_args=(f"--launch-log={log}",)), tmp_path / "run")
    second = run_locally(stand_in_job(max_trials=4, trainer_args=(f"--launch-log={log}",)), tmp_path / "run",
                         resume=True)
    assert [record.number for record in second.records] == [0, 1, 2, 3]
    assert [r.params for r in second.records[:2]] == [r.params for r in first.records]
    starts = [number for event, number, *_ in launch_events(log) if event == "start"]
    assert sorted(starts) == [0, 1, 2, 3]


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path):
    process = TrialProcess(0, 1, 0, tmp_path / "result.json", tmp_path / "log.txt")
    process.start(["python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(60)"], {"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    while "ready" not in process.log_tail().splitlines():
        process.wait(timeout=0.05)
    process.terminate()
    assert process.wait(timeout=0.5) is None, "SIGTERM was ignored"
    while process.exit_code() is None:
        process.kill_if_overdue(grace_period=0.2)
        process.wait(timeout=0.1)
    assert process.exit_code() == -9
    process.close()


def test_the_journal_opens_in_optuna_dashboard_with_every_trial(tmp_path: Path):
    from optuna_dashboard._storage_url import get_storage  # what `optuna-dashboard FILE` calls

    run_locally(stand_in_job(max_trials=2), tmp_path / "run")
    storage = get_storage(str(tmp_path / "run" / "optuna-journal.log"))
    (study,) = storage.get_all_studies()
    assert study.study_name == "stand-in"
    assert len(storage.get_all_trials(study._study_id)) == 2


def test_a_multi_objective_job_reports_its_pareto_front(tmp_path: Path):
    manifest = stand_in_manifest(max_trials=3, parallelism=2, sampler={"name": "nsga2", "seed": 2},
                                 pruner={"name": "median", "metric": "score"})
    manifest["spec"].pop("objective")
    manifest["spec"]["objectives"] = [{"metric": "score", "direction": "maximize"},
                                      {"metric": "test_score", "direction": "minimize"}]
    outcome = run_locally(load_job(manifest), tmp_path / "run")
    assert outcome.counts["succeeded"] == 3
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    # test_score = score - 0.01: maximizing one while minimizing the other puts every trial on the front.
    assert sorted(trial["number"] for trial in best["paretoFront"]) == [0, 1, 2]
    assert set(best["paretoFront"][0]["values"]) == {"score", "test_score"}
    assert outcome.summary.count("Pareto-optimal trial") == 3
    assert (tmp_path / "run" / "plots" / "pareto_front.png").exists()
