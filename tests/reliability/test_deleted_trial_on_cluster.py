"""A Trial object deleted by hand on the real control plane (#13 item 2): the garbage collector takes its pod,
the operator counts the trial as failed (`TrialDeleted`, not against maxFailedTrials) and the job finishes."""

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster


def test_a_running_trial_deleted_by_hand_fails_as_trial_deleted_and_the_job_finishes(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    apply(cluster, stand_in_job("handdel", namespace, budget={"maxTrials": 3, "parallelism": 2, "maxFailedTrials": 1},
                                args=["--steps", "16", "--step-seconds", "0.5"]))
    # Trial 1 exists and the job's status counts it (what the operator rebuilds from after the deletion).
    wait_for(lambda: 1 in trials_of(cluster, namespace, "handdel") and ((get(
        cluster, "tuningjob", namespace, "handdel").get("status") or {}).get("trialCounts") or {}).get("total") == 2,
        60, "trial 1 to be created and counted", operator)
    cluster.kubectl("delete", "trial", "handdel-1", "-n", namespace)
    finished = wait_finished(cluster, namespace, "handdel", 180, operator)
    trials = trials_of(cluster, namespace, "handdel")
    assert sorted(trials) == [0, 2], trials  # number 1 is not asked for again
    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    assert finished["status"]["trialCounts"]["failed"] == 1
    assert finished["status"]["trialCounts"]["succeeded"] == 2
    reasons = [e["reason"] for e in get(cluster, "events", namespace)["items"]]
    assert "TrialsDeleted" in reasons, reasons
    wait_for(lambda: not [p for p in get(cluster, "pods", namespace)["items"]
                          if p["metadata"]["name"].startswith("handdel-1-")], 60,
             "the garbage collector to delete the deleted trial's pod", operator)
