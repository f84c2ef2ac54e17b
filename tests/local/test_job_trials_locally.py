"""`ktune run` with a Job trial (`spec.trial.resource`): one local process per pod, with the variables torchrun and
an Indexed Job give, rank 0 the metrics process; what cannot run locally is refused naming the field."""

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

from ktune.algorithms import load_tuningjob
from ktune.engine import TrialState
from ktune.local.processes import LocalTemplateError

from .jobs import launch_events, run_locally, stand_in_manifest

# A trainer that needs its peers, as a torchrun worker does: rank 0 listens on MASTER_ADDR:MASTER_PORT and waits
# for every other rank to connect and say its RANK; only then does it write the result.
RENDEZVOUS_TRAINER = '''
import json, os, socket, sys, time
world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
if os.environ.get("FAIL_RANK") == str(rank):
    sys.exit(3)
if rank == 0:
    server = socket.create_server(address)
    server.settimeout(float(os.environ.get("WAIT_SECONDS", "30")))
    heard = []
    for _ in range(world - 1):
        connection, _ = server.accept()
        heard.append(int(connection.recv(16).decode()))
        connection.close()
    result = {"score": 1.0, "world_size": world, "peer_ranks": sum(heard),
              "completion_index": float(os.environ["JOB_COMPLETION_INDEX"])}
    open(os.environ["KTUNE_RESULT_PATH"], "w").write(json.dumps(result))
else:
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(address, timeout=1) as connection:
                connection.sendall(str(rank).encode())
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
'''


def as_indexed_job(manifest: dict[str, Any], pods: int, **job_spec: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(manifest)
    template = manifest["spec"]["trial"].pop("template")
    manifest["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job", "spec": {
        "completionMode": "Indexed", "completions": pods, "parallelism": pods, "template": template, **job_spec}}
    return manifest


def rendezvous_job(tmp_path: Path, pods: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    script = tmp_path / "rendezvous_trainer.py"
    script.write_text(RENDEZVOUS_TRAINER)
    manifest = as_indexed_job(stand_in_manifest(max_trials=1, parallelism=1), pods)
    container = manifest["spec"]["trial"]["resource"]["spec"]["template"]["spec"]["containers"][0]
    container.update(command=[sys.executable, str(script)], args=[],
                     env=[{"name": name, "value": value} for name, value in (env or {}).items()])
    return manifest


def test_each_trial_runs_one_process_per_pod_and_its_result_is_rank_0s(tmp_path: Path):
    log = tmp_path / "launches.log"
    manifest = as_indexed_job(stand_in_manifest(max_trials=2, parallelism=2, trainer_args=(f"--launch-log={log}",)),
                              pods=2)
    outcome = run_locally(load_tuningjob(manifest), tmp_path / "run")
    assert [record.state for record in outcome.records] == [TrialState.SUCCEEDED] * 2
    for record in outcome.records:
        assert record.metrics["completion_index"] == 0.0
        assert record.values == [pytest.approx(1 - (record.params["x"] - 0.3) ** 2)]
    starts = sorted(number for event, number, *_ in launch_events(log) if event == "start")
    assert starts == [0, 0, 1, 1]
    assert len(list((tmp_path / "run" / "trials").glob("*/log-1.txt"))) == 2, "each trial's rank 1 has its own log"


def test_ranks_find_each_other_through_master_addr_and_port_as_under_torchrun(tmp_path: Path):
    outcome = run_locally(load_tuningjob(rendezvous_job(tmp_path, pods=3)), tmp_path / "run")
    record = outcome.records[0]
    assert record.state == TrialState.SUCCEEDED, (record.reason, record.message)
    assert (record.metrics["world_size"], record.metrics["peer_ranks"]) == (3, 1 + 2)


def test_a_rank_that_fails_fails_the_trial_and_the_other_ranks_are_stopped(tmp_path: Path):
    manifest = rendezvous_job(tmp_path, pods=2, env={"FAIL_RANK": "1", "WAIT_SECONDS": "600"})
    outcome = run_locally(load_tuningjob(manifest), tmp_path / "run", grace_period=2.0)
    record = outcome.records[0]
    assert record.state == TrialState.FAILED
    assert record.message.startswith("rank 1: exit code 3"), record.message


def test_a_job_that_runs_its_completions_in_waves_is_refused_naming_the_fields(tmp_path: Path):
    manifest = as_indexed_job(stand_in_manifest(), pods=2)
    manifest["spec"]["trial"]["resource"]["spec"]["completions"] = 4
    with pytest.raises(LocalTemplateError) as refused:
        run_locally(load_tuningjob(manifest), tmp_path / "run")
    assert refused.value.problems == [
        "spec.trial.resource.spec.completions: `ktune run` runs every pod of a Job trial at once, as local "
        "processes: set completions equal to parallelism (got completions 4, parallelism 2), or run the job on a "
        "cluster"]
