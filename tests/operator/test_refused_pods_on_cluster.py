"""Pods the API server refuses on the real control plane: a used-up ResourceQuota makes trials wait (a
TrialsWaiting condition, no retry used); Pod Security fails the attempt with the API's message (PodRejected),
an Event says why, and the retry rules apply."""

import json
from pathlib import Path

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


def test_a_used_up_pod_quota_makes_trials_wait_with_a_condition_and_all_of_them_run(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "one-pod", "namespace": namespace},
             "spec": {"hard": {"pods": "1"}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(quota))
    wait_until(lambda: (get(cluster, "resourcequota", namespace, "one-pod").get("status") or {}).get("hard"),
               "the quota controller to account the quota")
    apply(cluster, stand_in_job("queued", namespace, budget={"maxTrials": 3, "parallelism": 2},
                                args=["--steps", "2", "--step-seconds", "1.0"]))

    def waiting() -> dict | None:
        found = condition(get(cluster, "tuningjob", namespace, "queued"), "TrialsWaiting")
        return found if found and found["status"] == "True" else None

    found = wait_until(waiting, "the job to say that a trial waits for the quota", timeout=60)
    assert found["reason"] == "QuotaExceeded" and "exceeded quota" in found["message"]

    job = wait_finished(cluster, namespace, "queued", timeout=180, operator=operator)
    assert job["status"]["phase"] == "Succeeded"
    assert {t["status"]["state"] for t in trials_of(cluster, namespace, "queued").values()} == {"Succeeded"}
    assert condition(job, "TrialsWaiting")["status"] == "False"
    reasons = [event["reason"] for event in get(cluster, "events", namespace)["items"]]
    assert "TrialsWaiting" in reasons and "TrialRetried" not in reasons and "TrialFailed" not in reasons


def test_a_pod_that_pod_security_refuses_fails_its_attempt_with_the_reason_and_is_retried(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    job = stand_in_job("escalating", namespace, retries=1, budget={"maxTrials": 1, "parallelism": 1})
    job["spec"]["trial"]["template"]["spec"]["hostNetwork"] = True  # valid for the API, refused by Pod Security
    apply(cluster, job)

    finished = wait_finished(cluster, namespace, "escalating", timeout=90, operator=operator)
    assert finished["status"]["phase"] == "Failed"
    trial = trials_of(cluster, namespace, "escalating")[0]["status"]
    assert trial["state"] == "Failed" and trial["reason"] == "PodRejected"
    assert trial["message"].startswith("403:") and "PodSecurity" in trial["message"]
    assert "hostNetwork" in trial["message"]
    events = {event["reason"]: event["message"] for event in get(cluster, "events", namespace)["items"]}
    assert "attempt 1 failed (PodRejected)" in events["TrialRetried"]
    assert "PodSecurity" in events["TrialFailed"]
    assert get(cluster, "pods", namespace)["items"] == []
