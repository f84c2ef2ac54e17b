"""`spec.suspend` on the real control plane: a suspended job lets its running trial finish, starts no new one and
says Suspended; `suspend: false` resumes it and it runs to the end with every trial once."""

import json
import time

import pytest

from tests.cluster.controlplane import Cluster
from tests.cluster.waiting import wait_until
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


def suspend(cluster: Cluster, namespace: str, name: str, value: bool) -> None:
    cluster.kubectl("patch", "tuningjob", name, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"suspend": value}}))


def test_a_suspended_job_finishes_its_running_trial_starts_none_and_resumes_when_unsuspended(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    apply(cluster, stand_in_job("pausable", namespace, budget={"maxTrials": 3, "parallelism": 1},
                                args=["--steps", "3", "--step-seconds", "0.7"]))
    wait_until(lambda: trials_of(cluster, namespace, "pausable"), "the first trial to start", timeout=60)
    suspend(cluster, namespace, "pausable", True)

    def suspended_and_idle() -> dict | None:
        job = get(cluster, "tuningjob", namespace, "pausable")
        status = job.get("status") or {}
        idle = status.get("phase") == "Suspended" and (status.get("trialCounts") or {}).get("running") == 0
        return job if idle else None

    job = wait_until(suspended_and_idle, "the job to be Suspended with its running trial finished", timeout=90)
    assert condition(job, "Suspended")["status"] == "True"
    assert condition(job, "Running")["status"] == "False"
    started = len(trials_of(cluster, namespace, "pausable"))
    assert {t["status"]["state"] for t in trials_of(cluster, namespace, "pausable").values()} == {"Succeeded"}
    time.sleep(5)  # several reconcile passes: a suspended job must start nothing in them
    assert len(trials_of(cluster, namespace, "pausable")) == started

    suspend(cluster, namespace, "pausable", False)
    finished = wait_finished(cluster, namespace, "pausable", timeout=120, operator=operator)
    assert finished["status"]["phase"] == "Succeeded"
    assert sorted(trials_of(cluster, namespace, "pausable")) == [0, 1, 2]
    assert condition(finished, "Suspended")["status"] == "False"
    reasons = [event["reason"] for event in get(cluster, "events", namespace)["items"]]
    assert "JobSuspended" in reasons and "JobResumed" in reasons
