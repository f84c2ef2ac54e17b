"""Trials and pods are a job's by owner uid, not by label (fake API): strangers with the job's labels are neither
adopted, counted, stopped nor deleted, and a job created again under a deleted one's name waits for the earlier
job's children to go instead of taking them over."""

import copy
import json
import logging
from typing import Any

import pytest

from ktune.operator.cluster import AlreadyExists
from ktune.operator.ownership import Ownership
from ktune.operator.pod_cache import PodCache
from ktune.operator.pods import controller_uid, owner_reference
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from tests.operator.fake_cluster import FakeCluster, LaggingPodIndex
from tests.operator.test_reconcile import NOW, Harness, job_body

LABELS = {"app.kubernetes.io/managed-by": "ktune", "ktune.dev/tuningjob": "job", "ktune.dev/trial": "0"}


class UidCluster(FakeCluster):
    """The fake API with a uid on every pod, as the API server gives them; counts Trial creations asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.trial_creates = 0

    def create_pod(self, namespace: str, pod: Any) -> dict[str, Any]:
        created = super().create_pod(namespace, pod)
        self.pods[created["metadata"]["name"]]["metadata"]["uid"] = created["metadata"]["uid"] = self._uid()
        return created

    def create_trial(self, namespace: str, trial: Any) -> dict[str, Any]:
        self.trial_creates += 1
        return super().create_trial(namespace, trial)


class UidHarness(Harness):
    def __init__(self, body: dict) -> None:
        super().__init__(body)
        self.cluster = UidCluster()
        self.reconciler = self.fresh_reconciler()

    def recreate_job(self, uid: str) -> None:
        """The job deleted and created again under its name: a new uid, no status, a new reconciler."""
        self.body = copy.deepcopy(self.body)
        self.body["metadata"]["uid"] = uid
        self.body.pop("status", None)
        self.cluster.job_status = {}
        self.reconciler = self.fresh_reconciler()

    def collect_garbage(self, owner_uid: str, keep: tuple[str, ...] = ()) -> None:
        """What the garbage collector does once the TuningJob `owner_uid` is gone: its Trials go, then their pods
        (those named in `keep` are still terminating)."""
        gone = {t["metadata"]["uid"] for t in self.cluster.trials.values() if controller_uid(t) == owner_uid}
        self.cluster.trials = {n: t for n, t in self.cluster.trials.items() if controller_uid(t) != owner_uid}
        self.cluster.pods = {n: p for n, p in self.cluster.pods.items() if controller_uid(p) not in gone or n in keep}


def finish(cluster: FakeCluster, name: str, score: float) -> None:
    cluster.finish_pod(name, json.dumps({"score": score}))


def stranger_trial(name: str, owner: dict | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"{name}-uid", "labels": dict(LABELS)}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial", "metadata": metadata,
            "spec": {"tuningJob": "job", "number": 0, "params": {"x": 0.99}},
            "status": {"state": "Running", "attempts": 1}}


def stranger_pod(name: str, owner_uid: str | None, phase: str = "Running") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"{name}-uid", "labels": dict(LABELS),
                                "annotations": {"ktune.dev/attempt": "1"},
                                "creationTimestamp": "2026-01-01T00:00:00Z"}
    if owner_uid is not None:
        metadata["ownerReferences"] = [{"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial", "name": "other",
                                        "uid": owner_uid, "controller": True}]
    return {"metadata": metadata, "spec": {"containers": [{"name": "t"}]},
            "status": {"phase": phase, "podIP": "10.9.9.9"}}


def test_a_trial_and_pods_made_by_hand_with_the_jobs_labels_are_neither_counted_stopped_nor_deleted():
    harness = UidHarness(job_body(max_trials=2, parallelism=2))
    other_job = {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob", "metadata": {"name": "x", "uid": "x-uid"}}
    harness.cluster.trials["job-by-hand"] = stranger_trial("job-by-hand", None)
    harness.cluster.trials["job-other"] = stranger_trial("job-other", other_job)
    harness.cluster.pods["job-by-hand-1"] = stranger_pod("job-by-hand-1", None)
    harness.cluster.pods["job-finished-1"] = stranger_pod("job-finished-1", "job-by-hand-uid", phase="Succeeded")
    strangers = copy.deepcopy((harness.cluster.trials["job-by-hand"], harness.cluster.trials["job-other"],
                               harness.cluster.pods["job-by-hand-1"], harness.cluster.pods["job-finished-1"]))
    status = harness.tick()
    assert status["trialCounts"]["running"] == 2
    assert sorted(harness.cluster.trials) == ["job-0", "job-1", "job-by-hand", "job-other"]
    finish(harness.cluster, "job-0-1", 0.5)
    finish(harness.cluster, "job-1-1", 0.7)
    status = harness.tick(NOW + 2)
    harness.reconciler = harness.fresh_reconciler()  # a restarted operator rebuilds from the API: the same
    status = harness.tick(NOW + 4)
    assert status["phase"] == "Succeeded"
    assert status["trialCounts"] == {"running": 0, "succeeded": 2, "pruned": 0, "failed": 0, "total": 2, "max": 2}
    assert status["bestTrial"]["name"] == "job-1"
    assert (harness.cluster.trials["job-by-hand"], harness.cluster.trials["job-other"],
            harness.cluster.pods["job-by-hand-1"], harness.cluster.pods["job-finished-1"]) == strangers
    assert sorted(harness.cluster.deleted_pods) == ["job-0-1", "job-1-1"]


def test_a_job_created_again_under_its_name_waits_for_the_earlier_jobs_children_and_never_adopts_them():
    harness = UidHarness(job_body(max_trials=2, parallelism=2))
    harness.tick()
    old = copy.deepcopy(harness.cluster.trials)
    finish(harness.cluster, "job-0-1", 0.99)  # the earlier job's result, which the new job must never see
    harness.recreate_job("job-uid-2")
    for second in range(3):  # the garbage collector has not come yet
        status = harness.tick(NOW + second)
        assert status.get("trialCounts", {}).get("total", 0) == 0
        assert status.get("bestTrial") is None and status.get("phase") != "Failed"
    assert harness.cluster.trial_creates == 2 + 3  # one refused creation per pass: waiting, not spinning
    taken = [message for _, reason, message in harness.cluster.events if reason == "TrialNameTaken"]
    assert len(taken) == 1 and "Trial job-0 exists and is not this TuningJob's (its controller: job-uid)" in taken[0]
    assert {name: trial["metadata"]["uid"] for name, trial in harness.cluster.trials.items()} == \
        {name: trial["metadata"]["uid"] for name, trial in old.items()}
    assert harness.cluster.deleted_pods == []

    harness.collect_garbage("job-uid", keep=("job-0-1",))  # the earlier pod of trial 0 is still terminating
    status = harness.tick(NOW + 10)
    waiting = next(c for c in status["conditions"] if c["type"] == "TrialsWaiting")
    assert (waiting["status"], waiting["reason"]) == ("True", "PodNameTaken")
    assert "pod job-0-1 exists and is not this trial's" in waiting["message"]
    assert harness.cluster.pods["job-0-1"]["status"]["phase"] == "Succeeded"  # not deleted, not taken as ours
    assert harness.trial_states() == {"job-0": "Running", "job-1": "Running"}
    assert harness.cluster.trials["job-0"]["metadata"]["uid"] != old["job-0"]["metadata"]["uid"]
    assert sorted(harness.cluster.pods) == ["job-0-1", "job-1-1"]
    assert controller_uid(harness.cluster.pods["job-1-1"]) == harness.cluster.trials["job-1"]["metadata"]["uid"]

    del harness.cluster.pods["job-0-1"]  # gone at last
    harness.tick(NOW + 12)
    assert controller_uid(harness.cluster.pods["job-0-1"]) == harness.cluster.trials["job-0"]["metadata"]["uid"]
    finish(harness.cluster, "job-0-1", 0.2)
    finish(harness.cluster, "job-1-1", 0.3)
    status = harness.tick(NOW + 14)
    assert status["phase"] == "Succeeded"
    assert status["bestTrial"]["value"] == 0.3
    waiting = next(c for c in status["conditions"] if c["type"] == "TrialsWaiting")
    assert waiting["status"] == "False"


def test_the_pod_cache_expects_its_own_creation_not_an_earlier_pod_of_the_same_name():
    cluster = UidCluster()
    index = LaggingPodIndex(cluster, "ns")
    cache = PodCache(cluster, clock=lambda: 0.0)
    cache.attach(index)
    cluster.pods["job-0-1"] = stranger_pod("job-0-1", "old-trial-uid", phase="Failed")
    index.catch_up()  # the watch shows the earlier pod
    ours = {"metadata": {"name": "job-0-1", "labels": dict(LABELS), "ownerReferences": [
        {"kind": "Trial", "name": "job-0", "uid": "new-trial-uid", "controller": True}]}, "spec": {}}
    with pytest.raises(AlreadyExists):
        cache.create_pod("ns", ours)
    assert [controller_uid(p) for p in cache.list_pods("ns", "job")] == ["old-trial-uid"]  # not expected as ours
    del cluster.pods["job-0-1"]  # deleted, but the watch has not said so yet
    created = cache.create_pod("ns", ours)
    listed = cache.list_pods("ns", "job")
    assert [p["metadata"]["uid"] for p in listed] == [created["metadata"]["uid"]]  # not the stale copy
    index.catch_up()
    assert [p["metadata"]["uid"] for p in cache.list_pods("ns", "job")] == [created["metadata"]["uid"]]
    assert cluster.pod_lists == 1  # the 409's own look-up only


def test_strangers_are_filtered_by_controller_uid_and_logged_once(caplog: pytest.LogCaptureFixture):
    job = job_body()
    ours = stranger_trial("job-0", job)
    other = stranger_trial("job-1", {**job, "metadata": {**job["metadata"], "uid": "earlier-uid"}})
    not_controller = stranger_trial("job-2", None)
    not_controller["metadata"]["ownerReferences"] = [{**owner_reference(job), "controller": False}]
    ownership = Ownership()
    with caplog.at_level(logging.INFO, logger="ktune.operator.ownership"):
        for _ in range(3):
            assert ownership.trials(job, [ours, other, not_controller]) == [ours]
            pods = [stranger_pod("job-0-1", "job-0-uid"), stranger_pod("job-1-1", "job-1-uid")]
            assert ownership.pods(job, {0: ours}, pods) == {"job-0-1": (0, pods[0])}
    noted = [record.getMessage() for record in caplog.records]
    assert len(noted) == 3  # job-1, job-2, pod job-1-1: once each over three passes
    assert "Trial job-1" in noted[0] and "earlier-uid" in noted[0]


def test_a_restarted_operator_adopts_only_pods_its_trials_control():
    harness = UidHarness(job_body(max_trials=1, parallelism=1))
    harness.tick()
    # Trial 0's attempt 2 by name, but made by someone else: it must not be adopted as the trial's newest attempt.
    harness.cluster.pods["job-0-2"] = stranger_pod("job-0-2", "someone-uid")
    harness.cluster.pods["job-0-2"]["metadata"]["annotations"]["ktune.dev/attempt"] = "2"
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(), scrape=harness.scrape)
    harness.tick(NOW + 2)
    finish(harness.cluster, "job-0-1", 0.4)
    status = harness.tick(NOW + 4)
    assert status["phase"] == "Succeeded"
    assert harness.cluster.trials["job-0"]["status"]["attempts"] == 1
    assert "job-0-2" in harness.cluster.pods and "job-0-2" not in harness.cluster.deleted_pods
