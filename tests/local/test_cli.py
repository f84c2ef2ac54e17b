"""The `ktune` command line: run (including Ctrl-C and --resume in a real process), validate, errors."""

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ktune.cli.main import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, main

from .jobs import launch_events, stand_in_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KTUNE = [sys.executable, "-m", "ktune.cli"]


def write_job(path: Path, manifest: dict) -> Path:
    path.write_text(yaml.safe_dump(manifest))
    return path


def trial_states(output: Path) -> dict[int, str]:
    """Each trial's state, read from trials.csv (rewritten atomically after every change)."""
    lines = (output / "trials.csv").read_text().splitlines()[1:] if (output / "trials.csv").exists() else []
    return {int(line.split(",")[0]): line.split(",")[1] for line in lines}


def trial_params(output: Path) -> dict[int, float]:
    """Each trial's x, from trials.csv."""
    with (output / "trials.csv").open() as handle:
        return {int(row["number"]): float(row["param_x"]) for row in csv.DictReader(handle)}


def no_process_mentions(text: str) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                return False
        except OSError:
            continue  # the process ended while we looked
    return True


def test_ctrl_c_keeps_finished_trials_and_resume_finishes_without_repeating_them(tmp_path: Path):
    log = tmp_path / "launches.log"
    output = tmp_path / "run"
    job = write_job(tmp_path / "job.yaml", stand_in_manifest(
        max_trials=6, parallelism=2, steps=3, step_seconds=0.3, sampler={"name": "tpe", "seed": 5},
        trainer_args=(f"--launch-log={log}",),
    ))
    command = [*KTUNE, "run", str(job), "--output", str(output), "--scrape-interval", "0.1", "--grace-period", "3"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while list(trial_states(output).values()).count("Succeeded") < 2 and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    printed = first.communicate(timeout=60)[0]
    assert first.returncode == EXIT_INTERRUPTED, printed
    assert "--resume" in printed and "Traceback" not in printed
    assert no_process_mentions(str(log)), "a trial process outlived the interrupted run"

    before = trial_states(output)
    finished_before = {number for number, state in before.items() if state != "Running"}
    interrupted = {number for number, state in before.items() if state == "Running"}
    assert len(finished_before) >= 2 and len(before) < 6

    params_before = trial_params(output)
    launched_before = len(launch_events(log))

    second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=180)
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    after = trial_states(output)
    assert sorted(after) == list(range(6)) and "Running" not in after.values()
    assert all(trial_params(output)[number] == x for number, x in params_before.items())
    starts_after = [(number, x) for event, number, _, x in launch_events(log)[launched_before:] if event == "start"]
    numbers_after = [number for number, _ in starts_after]
    assert not finished_before & set(numbers_after), "a finished trial was rerun"
    for number in interrupted:
        assert numbers_after.count(number) == 1, f"interrupted trial {number} was not rerun once"
        assert dict(starts_after)[number] == params_before[number], "rerun with other params"
    assert sorted(numbers_after) == sorted(interrupted | set(range(len(before), 6)))
    best = json.loads((output / "best.json").read_text())
    assert best["finished"]["reason"] == "MaxTrialsReached"
    assert sum(best["trialCounts"].values()) == 6


def test_run_prints_the_best_trial_table_and_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    job = write_job(tmp_path / "job.yaml", stand_in_manifest(max_trials=2, parallelism=2, steps=1))
    status = main(["run", str(job), "--output", str(tmp_path / "run"), "--scrape-interval", "0.1"])
    printed = capsys.readouterr().out
    assert status == EXIT_OK
    assert "Best trial" in printed and "MaxTrialsReached" in printed
    assert re.search(r"\n  metric +validation +test\n  score +[0-9.]+ +[0-9.]+\n", printed)
    assert f"optuna-dashboard {tmp_path / 'run' / 'optuna-journal.log'}" in printed


def test_run_of_an_invalid_job_names_the_field_without_a_traceback(tmp_path: Path, capsys):
    manifest = stand_in_manifest()
    manifest["spec"]["parameters"][0]["low"] = 5
    job = write_job(tmp_path / "job.yaml", manifest)
    assert main(["run", str(job), "--output", str(tmp_path / "run")]) == EXIT_BAD_INPUT
    errors = capsys.readouterr().err
    assert "spec.parameters[0]: low must be < high" in errors
    assert not (tmp_path / "run").exists()


def test_run_of_a_template_that_cannot_run_locally_names_the_field(tmp_path: Path, capsys):
    manifest = stand_in_manifest()
    manifest["spec"]["trial"]["template"]["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "s"}}]
    job = write_job(tmp_path / "job.yaml", manifest)
    assert main(["run", str(job), "--output", str(tmp_path / "run")]) == EXIT_BAD_INPUT
    assert "containers[0].envFrom: not supported by `ktune run`" in capsys.readouterr().err


def test_resume_without_a_previous_run_says_what_to_do(tmp_path: Path, capsys):
    job = write_job(tmp_path / "job.yaml", stand_in_manifest())
    assert main(["run", str(job), "--output", str(tmp_path / "run"), "--resume"]) == EXIT_BAD_INPUT
    assert "nothing to resume" in capsys.readouterr().err


def test_every_example_is_a_valid_tuningjob(capsys):
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 3
    assert main(["validate", *map(str, examples)]) == 0
    assert capsys.readouterr().out.count("valid TuningJob") == len(examples)


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    printed = capsys.readouterr().out
    assert "run" in printed and "validate" in printed


def test_run_of_a_suspended_job_says_so_and_runs_nothing(tmp_path: Path, capsys):
    manifest = stand_in_manifest()
    manifest["spec"]["suspend"] = True
    job = write_job(tmp_path / "job.yaml", manifest)
    assert main(["run", str(job), "--output", str(tmp_path / "run")]) == EXIT_BAD_INPUT
    assert "spec.suspend: true pauses the job" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
