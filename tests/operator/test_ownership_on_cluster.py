"""Trials and pods are a job's by owner uid (#13 item 8), on the real control plane (its kube-controller-manager
runs the garbage collector): a TuningJob deleted and created again at once under its name waits for the earlier
job's children to go and never adopts them, and a Trial and pods made by hand with a job's labels are neither
counted nor deleted."""

import json
import subprocess
import sys
from typing import Any

import pytest

from ktune.operator.pods import controller_uid
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    KTUNE,
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

HOLD = "test.ktune.dev/hold"  # a finalizer of this test's: holds an earlier object until the test lets it go
SELECTOR = "ktune.dev/tuningjob=again"


def uids(cluster: Cluster, kind: str, namespace: str) -> set[str]:
    return {item["metadata"]["uid"] for item in get(cluster, kind, namespace, selector=SELECTOR)["items"]}


def set_finalizers(cluster: Cluster, kind: str, namespace: str, name: str, finalizers: list[str]) -> None:
    cluster.kubectl("patch", kind, name, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"metadata": {"finalizers": finalizers}}))


def test_a_job_deleted_and_created_again_under_its_name_waits_for_the_earlier_jobs_children_and_never_adopts_them(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    # The earlier job: x in [0, 1], so its scores are above 0.5; some trials done, two running when it is deleted.
    earlier = stand_in_job("again", namespace, budget={"maxTrials": 50, "parallelism": 2},
                           args=["--steps", "3", "--step-seconds", "0.4"])
    apply(cluster, earlier)

    def some_done_two_running() -> bool:
        trials = trials_of(cluster, namespace, "again")
        states = [t.get("status", {}).get("state") for t in trials.values()]
        return states.count("Succeeded") >= 2 and states.count("Running") == 2 and 0 in trials and 1 in trials

    wait_for(some_done_two_running, 120, "two trials done and two running", operator)
    # Hold names the new job needs: Trial again-0 (a finished trial's) and the pod of the first running trial, so
    # that the new job meets them for certain, however fast the garbage collector is.
    def hold_a_running_trials_pod() -> str | None:
        for trial in trials_of(cluster, namespace, "again").values():
            pod = trial.get("status", {}).get("podName")
            if trial.get("status", {}).get("state") == "Running" and pod:
                patch = json.dumps({"metadata": {"finalizers": [HOLD]}})
                if cluster.kubectl("patch", "pod", pod, "-n", namespace, "--type=merge", "-p", patch,
                                   check=False).returncode == 0:
                    return str(pod)
        return None

    held_pod = wait_for(hold_a_running_trials_pod, 60, "a running trial's pod to hold", operator)
    max_trials = max(3, int(held_pod.split("-")[1]) + 1)  # the new job needs the held pod's name too
    set_finalizers(cluster, "trial", namespace, "again-0", [HOLD])
    try:
        cluster.kubectl("delete", "tuningjob", "again", "-n", namespace, "--timeout=60s", timeout=70)
        # The earlier job's daemon has stopped: what is left of it now is all the garbage collector has to remove.
        old_trials, old_pods = uids(cluster, "trials", namespace), uids(cluster, "pods", namespace)
        # The new job: x in [2, 3], so every score of its own is below 0 and any earlier result would show.
        again = stand_in_job("again", namespace, budget={"maxTrials": max_trials, "parallelism": 2},
                             parameters=[{"name": "x", "type": "float", "low": 2.0, "high": 3.0}],
                             args=["--steps", "2", "--step-seconds", "0.3"])
        again["spec"]["sampler"] = {"name": "random", "seed": 11}
        apply(cluster, again)
        new_uid = get(cluster, "tuningjob", namespace, "again")["metadata"]["uid"]

        wait_for(lambda: get(cluster, "trial", namespace, "again-0")["metadata"].get("deletionTimestamp"), 60,
                 "the garbage collector to delete the earlier Trial again-0", operator)
        wait_for(lambda: "leaving Trial again-0 alone" in operator.log(), 30, "the new job to pass over again-0",
                 operator)
        taken = wait_for(lambda: [e["message"] for e in get(cluster, "events", namespace)["items"]
                                  if e["reason"] == "TrialNameTaken"], 30, "a TrialNameTaken Event", operator)
        assert len(taken) == 1 and taken[0].startswith("Trial again-0 exists") and "not this TuningJob's" in taken[0]
        job = get(cluster, "tuningjob", namespace, "again")
        assert (job.get("status") or {}).get("phase") != "Failed"
        assert not ((job.get("status") or {}).get("trialCounts") or {}).get("total")
        assert controller_uid(get(cluster, "trial", namespace, "again-0")) != new_uid  # not taken over
        set_finalizers(cluster, "trial", namespace, "again-0", [])

        def waiting_for_the_held_pod() -> dict[str, Any] | None:
            waiting = condition(get(cluster, "tuningjob", namespace, "again"), "TrialsWaiting")
            return waiting if waiting and waiting["status"] == "True" else None

        waiting = wait_for(waiting_for_the_held_pod, 120, f"the new job to wait for pod {held_pod}", operator)
        assert waiting["reason"] == "PodNameTaken" and held_pod in waiting["message"]
        held = get(cluster, "pod", namespace, held_pod)
        assert held["metadata"]["uid"] in old_pods and held["metadata"].get("deletionTimestamp")
        set_finalizers(cluster, "pod", namespace, held_pod, [])
        job = wait_finished(cluster, namespace, "again", 180, operator)
    finally:
        for kind, name in (("trial", "again-0"), ("pod", held_pod)):
            cluster.kubectl("patch", kind, name, "-n", namespace, "--type=merge", "-p",
                            json.dumps({"metadata": {"finalizers": []}}), check=False)

    status = job["status"]
    assert status["phase"] == "Succeeded"
    assert status["trialCounts"]["total"] == max_trials and status["trialCounts"]["succeeded"] == max_trials
    assert 2.0 <= status["bestTrial"]["params"]["x"] <= 3.0 and status["bestTrial"]["value"] < 0
    trials = trials_of(cluster, namespace, "again")
    assert sorted(trials) == list(range(max_trials))
    assert {controller_uid(trial) for trial in trials.values()} == {new_uid}
    assert all(2.0 <= trial["spec"]["params"]["x"] <= 3.0 for trial in trials.values())
    assert all(trial["status"]["value"] < 0 for trial in trials.values())
    wait_for(lambda: not (uids(cluster, "trials", namespace) & old_trials)
             and not (uids(cluster, "pods", namespace) & old_pods), 90,
             "every Trial and pod of the earlier job to be garbage-collected", operator)


def test_a_trial_and_pods_made_by_hand_with_a_jobs_labels_are_neither_counted_nor_deleted(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    labels = {"app.kubernetes.io/managed-by": "ktune", "ktune.dev/tuningjob": "mine", "ktune.dev/trial": "0"}
    by_hand = {"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial",
               "metadata": {"name": "by-hand-0", "namespace": namespace, "labels": labels},
               "spec": {"tuningJob": "mine", "number": 0, "params": {"x": 0.3}}}
    apply(cluster, by_hand)
    trial = get(cluster, "trial", namespace, "by-hand-0")

    def pod(name: str, code: str, owner: dict[str, Any] | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels,
                                    "annotations": {"ktune.dev/attempt": "1"}}
        if owner is not None:
            metadata["ownerReferences"] = [{"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial",
                                            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                            "controller": True}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "none", "command": [sys.executable, "-c", code]}]}}

    apply(cluster, pod("by-hand-running", "import time; time.sleep(600)", None))  # a "stray" running pod
    apply(cluster, pod("by-hand-done", "print('done')", trial))  # a succeeded pod, as if a trial's
    wait_for(lambda: get(cluster, "pod", namespace, "by-hand-done")["status"].get("phase") == "Succeeded", 60,
             "the hand-made pod to succeed")
    made = {name: get(cluster, kind, namespace, name)["metadata"]["uid"]
            for kind, name in (("trial", "by-hand-0"), ("pod", "by-hand-running"), ("pod", "by-hand-done"))}

    apply(cluster, stand_in_job("mine", namespace, budget={"maxTrials": 3, "parallelism": 2},
                                args=["--steps", "2", "--step-seconds", "0.3"]))
    job = wait_finished(cluster, namespace, "mine", 180, operator)

    status = job["status"]
    assert status["phase"] == "Succeeded"
    assert status["trialCounts"]["total"] == 3 and status["trialCounts"]["succeeded"] == 3
    assert status["bestTrial"]["name"] != "by-hand-0"
    assert sorted(t["metadata"]["name"] for t in get(cluster, "trials", namespace)["items"]) == \
        ["by-hand-0", "mine-0", "mine-1", "mine-2"]
    assert {name: get(cluster, kind, namespace, name)["metadata"]["uid"]
            for kind, name in (("trial", "by-hand-0"), ("pod", "by-hand-running"), ("pod", "by-hand-done"))} == made
    assert not get(cluster, "trial", namespace, "by-hand-0").get("status")  # never written to
    running = get(cluster, "pod", namespace, "by-hand-running")
    assert running["status"]["phase"] == "Running" and not running["metadata"].get("deletionTimestamp")
    assert "leaving Trial by-hand-0 alone" in operator.log()
    shown = subprocess.run([str(KTUNE), "status", "mine", "-n", namespace], capture_output=True, text=True, timeout=60,
                           env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": str(KTUNE.parent)}, check=True).stdout
    table = shown.split("TRIAL ", 1)[1].splitlines()[1:]
    rows = [line.split()[0] for line in table if line.strip()]
    assert rows == ["0", "1", "2"], shown  # `ktune status` leaves the hand-made Trial out too
