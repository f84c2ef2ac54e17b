"""Trials that are Indexed Jobs (`spec.trial.resource`) on the real control plane: kube-controller-manager's Job
controller runs each trial's two pods through the node agent; the operator reads index 0's metrics and result,
deletes a pruned trial's Job with every pod of it, and counts both pods' hours."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import Cluster
from tests.cluster.waiting import wait_until
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
)
from tests.operator.trial_hours import assert_hours_match

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]

CPU_PER_POD = 0.25


def indexed_job(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """The stand-in trainer's TuningJob with each trial an Indexed Job of two pods (0.25 CPU each)."""
    job = stand_in_job(name, namespace, **spec)
    template = job["spec"]["trial"].pop("template")
    template["spec"]["containers"][0]["resources"] = {"requests": {"cpu": str(CPU_PER_POD)}}
    job["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job", "spec": {
        "completionMode": "Indexed", "completions": 2, "parallelism": 2, "template": template}}
    return job


def test_indexed_job_trials_succeed_from_index_0_a_pruned_one_loses_every_pod_and_hours_count_both_pods(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    launches = tmp_path / "launches.log"
    # x = 1.5 scores below zero at every step: the threshold pruner stops that trial from index 0's metrics.
    job = indexed_job(
        "indexed", namespace,
        parameters=[{"name": "x", "type": "categorical", "choices": [0.3, 1.5]}],
        args=["--steps", "8", "--step-seconds", "0.6", "--launch-log", str(launches)],
        sampler={"name": "grid", "seed": 1},
        pruner={"name": "threshold", "options": {"lower": 0.0, "n_warmup_steps": 1}},
        budget={"maxTrials": 2, "parallelism": 2},
    )
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "indexed", 240, operator)
    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    trials = {t["spec"]["params"]["x"]: t for t in trials_of(cluster, namespace, "indexed").values()}
    kept, pruned = trials[0.3], trials[1.5]

    assert kept["status"]["state"] == "Succeeded"
    assert (kept["status"]["kind"], kept["status"]["pods"], "podName" in kept["status"]) == ("Job", 2, False)
    assert kept["status"]["resourceName"].startswith("indexed-")
    table = cluster.kubectl("get", "tr", "-n", namespace).stdout
    assert table.split("\n")[0].split()[:4] == ["NAME", "JOB", "STATE", "KIND"] and " Job " in table, table
    assert kept["status"]["metrics"]["completion_index"] == 0.0, "the result is index 0's termination message"
    assert kept["status"]["value"] == pytest.approx(1.0)
    assert pruned["status"]["state"] == "Pruned" and pruned["status"]["reason"] == "PrunedByPruner"
    assert pruned["status"]["intermediate"] and all(p["value"] < 0 for p in pruned["status"]["intermediate"])

    # Every trial ran as two pods (one per index), each with the contract's variables.
    starts = [line.split() for line in launches.read_text().splitlines() if line.startswith("start ")]
    assert sorted(number for _, number, _, _ in starts) == ["0", "0", "1", "1"]

    def trial_leftovers(number: int) -> list[str]:
        selector = f"ktune.dev/tuningjob=indexed,ktune.dev/trial={number}"
        jobs = get(cluster, "jobs", namespace, selector=selector)["items"]
        pods = get(cluster, "pods", namespace, selector=selector)["items"]
        return [f"{item['kind']} {item['metadata']['name']}" for item in jobs + pods]

    # The pruned trial's Job was deleted in the foreground, with both its pods; the succeeded one once its result
    # was recorded (delete_succeeded_pods, the default).
    for trial in (pruned, kept):
        number = trial["spec"]["number"]
        wait_until(lambda number=number: not trial_leftovers(number), f"trial {number}'s Job and pods to be gone",
                   timeout=90)

    # Hours count both pods of each trial: 2 x 0.25 CPU for as long as the trial ran (times have 1 s precision).
    assert_hours_match(finished["status"]["cpuHoursUsed"], list(trials.values()), per_hour=2 * CPU_PER_POD)


def test_a_job_trial_whose_pod_fails_fails_with_the_jobs_reason_and_is_retried_as_a_new_job(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    job = indexed_job("failing", namespace, retries=1, budget={"maxTrials": 1, "parallelism": 1},
                      args=["--steps", "1", "--step-seconds", "0.2", "--fail-above", "-1"])
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "failing", 180, operator)
    trial = trials_of(cluster, namespace, "failing")[0]
    assert finished["status"]["phase"] == "Failed"
    assert trial["status"]["state"] == "Failed" and trial["status"]["attempts"] == 2
    # The Job controller's reason (backoffLimit 0: the first failed pod fails the Job), and the pod's exit code.
    assert trial["status"]["reason"] == "BackoffLimitExceeded", trial["status"]
    assert "exit code 1" in trial["status"]["message"]
    names = sorted(item["metadata"]["name"] for item in get(cluster, "jobs", namespace)["items"])
    assert names == ["failing-0-1", "failing-0-2"], "each attempt is a Job of its own, kept for its pods' logs"


def test_an_operator_sigkilled_while_job_trials_run_adopts_their_jobs_and_runs_each_trial_once(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    launches = tmp_path / "launches.log"
    job = indexed_job("restart", namespace, budget={"maxTrials": 4, "parallelism": 2},
                      args=["--steps", "4", "--step-seconds", "0.6", "--launch-log", str(launches)])
    apply(cluster, job)

    def both_indexes_of_two_trials_started() -> bool:
        starts = [line for line in launches.read_text().splitlines() if line.startswith("start ")] \
            if launches.exists() else []
        return len(starts) >= 4

    wait_until(both_indexes_of_two_trials_started, "two Job trials to run both their pods", timeout=120)
    operator.kill()
    operator.start()
    finished = wait_finished(cluster, namespace, "restart", 240, operator)
    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    trials = trials_of(cluster, namespace, "restart")
    assert sorted(trials) == [0, 1, 2, 3]
    assert all(t["status"]["state"] == "Succeeded" and t["status"]["attempts"] == 1 for t in trials.values())
    assert all(t["status"]["metrics"]["completion_index"] == 0.0 for t in trials.values())
    starts = sorted(line.split()[1] for line in launches.read_text().splitlines() if line.startswith("start "))
    assert starts == ["0", "0", "1", "1", "2", "2", "3", "3"], "each trial's Job ran its 2 pods once"


KUBEFLOW_KINDS = "kubeflow.org/v1 PyTorchJob, kubeflow.org/v1 TFJob, kubeflow.org/v1 MPIJob, kubeflow.org/v1 XGBoostJob"
MASTER = {"template": {"spec": {"containers": [{"name": "pytorch", "image": "example.com/trainer:1"}]}}}


@pytest.mark.parametrize("change, message", [
    ({"apiVersion": "kubeflow.org/v1", "kind": "MXJob"},
     f"unsupported kind: a trial resource is one of: batch/v1 Job, {KUBEFLOW_KINDS}"),
    ({"spec": {"parallelism": 0, "template": {}}}, "spec.trial.resource.spec.parallelism: Invalid value: 0"),
    ({"spec": {"completionMode": "Indexed"}}, "spec.trial.resource.spec.template: Required value"),
    ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"runPolicy": {}}},
     "spec.trial.resource.spec.pytorchReplicaSpecs: Required value"),
    ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
      "spec": {"pytorchReplicaSpecs": {"Master": MASTER, "Worker": {**MASTER, "replicas": 0}}}},
     "spec.trial.resource.spec.pytorchReplicaSpecs.Worker.replicas: Invalid value: 0"),
    ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {"Worker": {}}}},
     "spec.trial.resource.spec.pytorchReplicaSpecs.Worker.template: Required value"),
    ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {"Chief": MASTER}}},
     "replica types of a PyTorchJob are Master, Worker"),
])
def test_the_api_server_refuses_a_bad_trial_resource_with_the_reason(cluster: Cluster, operator_kubeconfig: Path,
                                                                     namespace: str, change: dict[str, Any],
                                                                     message: str):
    """The CRD's own rules (`operator_kubeconfig` installs it), before any operator sees the job."""
    job = indexed_job("refused", namespace)
    job["spec"]["trial"]["resource"].update(change)
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(job), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize("trial_change, message", [
    ({"primaryPod": {}}, "needs matchLabels or matchExpressions: an empty selector selects every pod"),
    ({"primaryPod": {"matchExpressions": [{"key": "role", "operator": "In"}]}},
     "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"),
    ({"primaryPod": {"matchExpressions": [{"key": "role", "operator": "Equals", "values": ["a"]}]}},
     'spec.trial.primaryPod.matchExpressions[0].operator: Unsupported value: "Equals"'),
])
def test_the_api_server_refuses_a_bad_primary_pod_selector(cluster: Cluster, operator_kubeconfig: Path,
                                                           namespace: str, trial_change: dict[str, Any], message: str):
    job = indexed_job("refused", namespace)
    job["spec"]["trial"].update(trial_change)
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(job), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_api_server_refuses_primary_pod_without_resource(cluster: Cluster, operator_kubeconfig: Path,
                                                             namespace: str):
    job = stand_in_job("refused", namespace)
    job["spec"]["trial"]["primaryPod"] = {"matchLabels": {"training.kubeflow.org/replica-type": "master"}}
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(job), check=False)
    assert result.returncode != 0 and "primaryPod needs resource" in result.stderr, result.stderr


@pytest.mark.parametrize("path", ["examples/pytorchjob.yaml", "tests/fixtures/tuningjobs/valid/pytorchjob.yaml",
                                  "tests/fixtures/tuningjobs/valid/indexed-job.yaml"])
def test_the_api_server_accepts_the_trial_resources_ktune_validate_accepts(cluster: Cluster, operator_kubeconfig: Path,
                                                                          namespace: str, path: str):
    job = yaml.safe_load((ROOT / path).read_text())
    job["metadata"]["namespace"] = namespace
    job["spec"]["trial"]["primaryPod"] = {"matchExpressions": [
        {"key": "training.kubeflow.org/replica-type", "operator": "In", "values": ["master", "worker"]},
        {"key": "training.kubeflow.org/replica-index", "operator": "Exists"}]}
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(job), check=False)
    assert result.returncode == 0, result.stderr
