"""Warm start and GPU-hour budgets on the real control plane, with the stand-in trainer as trials."""

import copy

import pytest

from ktune.algorithms import load_tuningjob
from ktune.engine import Engine
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    condition,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
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
