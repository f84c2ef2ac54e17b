"""Warm start (imported once, kept across restarts) and GPU-hour budgets on the real control plane, with the
stand-in trainer as trials."""

import copy
import json

import pytest

from ktune.algorithms import load_tuningjob
from ktune.engine import Engine
from ktune.operator.trials import trial_manifest
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    condition,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster

FAST = ["--steps", "1", "--step-seconds", "0.1"]


def test_a_job_warm_started_from_a_finished_job_imports_its_trials_after_their_pods_are_gone(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    apply(cluster, stand_in_job("first", namespace, args=FAST, budget={"maxTrials": 4, "parallelism": 2}))
    first = wait_finished(cluster, namespace, "first", timeout=90, operator=operator)
    assert first["status"]["trialCounts"]["succeeded"] == 4
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", "ktune.dev/tuningjob=first", "--wait=true")

    second = stand_in_job("second", namespace, args=FAST, budget={"maxTrials": 1, "parallelism": 1},
                          sampler={"name": "tpe", "seed": 5, "options": {"n_startup_trials": 2}})
    cold_spec = load_tuningjob(copy.deepcopy(second)).spec
    second["spec"]["warmStart"] = {"from": [{"name": "first"}]}
    apply(cluster, second)
    job = wait_finished(cluster, namespace, "second", timeout=90, operator=operator)

    assert job["status"]["importedTrials"] == 4 and job["status"]["importedTrialsDropped"] == 0
    assert sorted(trials_of(cluster, namespace, "second")) == [0]
    suggested = trials_of(cluster, namespace, "second")[0]["spec"]["params"]
    assert suggested != Engine(cold_spec).ask(now=0.0).params
    reasons = [event["reason"] for event in get(cluster, "events", namespace)["items"]]
    assert "WarmStarted" in reasons


def test_the_imported_trials_stay_the_same_across_restarts_when_the_source_gains_a_trial_and_is_deleted(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    apply(cluster, stand_in_job("first", namespace, args=FAST, budget={"maxTrials": 3, "parallelism": 3}))
    wait_finished(cluster, namespace, "first", timeout=90, operator=operator)
    second = stand_in_job("second", namespace, args=["--steps", "10", "--step-seconds", "0.5"],
                          budget={"maxTrials": 4, "parallelism": 1},
                          sampler={"name": "tpe", "seed": 5, "options": {"n_startup_trials": 2}})
    second["spec"]["warmStart"] = {"from": [{"name": "first"}]}
    apply(cluster, second)
    kept = wait_for(lambda: (get(cluster, "tuningjob", namespace, "second").get("status") or {}).get(
        "warmStartTrials"), 60, "the imported trials kept in status", operator)
    assert len(json.loads(kept)["trials"]) == 3

    # The source gains a succeeded trial (as a source still running would), then the operator restarts.
    source = get(cluster, "tuningjob", namespace, "first")
    extra = trial_manifest(source, 3, {"x": 0.3})
    apply(cluster, extra)
    cluster.kubectl("patch", "trial", "first-3", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"state": "Succeeded", "values": [1.0], "value": 1.0,
                                           "metrics": {"score": 1.0}}}))
    restart_and_wait_for_the_rebuild(operator)
    # Then the source is deleted with its Trials, and the operator restarts again.
    cluster.kubectl("delete", "tuningjob", "first", "-n", namespace, "--wait=true")
    restart_and_wait_for_the_rebuild(operator)

    job = wait_finished(cluster, namespace, "second", timeout=180, operator=operator)
    assert job["status"]["phase"] == "Succeeded"
    assert job["status"]["warmStartTrials"] == kept
    assert (job["status"]["importedTrials"], job["status"]["importedTrialsDropped"]) == (3, 0)
    reasons = [event["reason"] for event in get(cluster, "events", namespace)["items"]
               if event["involvedObject"]["name"] == "second"]
    assert reasons.count("WarmStarted") == 1 and "WarmStartSkipped" not in reasons


def restart_and_wait_for_the_rebuild(operator: OperatorProcess) -> None:
    """SIGKILL the operator, start it again, and wait until the new process has rebuilt job `second`'s study."""
    operator.kill()
    operator.start()
    wait_for(lambda: "second: rebuilt the study" in operator.log().rsplit("--- starting", 1)[-1], 90,
             "the restarted operator to rebuild the study", operator)


def test_a_gpu_hour_budget_smaller_than_two_trials_stops_the_job_after_the_first(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    job = stand_in_job("gpu-budget", namespace, args=["--steps", "2", "--step-seconds", "0.5"],
                       budget={"maxTrials": 4, "parallelism": 2, "maxGpuHours": 5.0e-4})  # 1.8 GPU-seconds
    job["spec"]["trial"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "gpu-budget", timeout=90, operator=operator)

    assert sorted(trials_of(cluster, namespace, "gpu-budget")) == [0]
    assert finished["status"]["phase"] == "Succeeded"
    assert condition(finished, "Succeeded")["reason"] == "BudgetExhausted"
    assert "GPU-hours used (maxGpuHours" in condition(finished, "Succeeded")["message"]
    assert finished["status"]["gpuHoursUsed"] > 0
    assert finished["status"]["cpuHoursUsed"] == finished["status"]["gpuHoursUsed"]  # 1 cpu (unset), 1 GPU
