"""Queued trial resources (Kueue): created suspended with the queue label, read back as waiting for admission,
and shown as Pending Trials that a rebuilt study reads as running."""

from typing import Any

from ktune.algorithms import load_tuningjob
from ktune.engine import TrialRecord, TrialState
from ktune.operator.inspection import ClusterStudy, status_report
from ktune.operator.queueing import QUEUE_LABEL, admission_wait, queued_manifest, suspended
from ktune.operator.trials import record_from_trial, trial_status
from ktune.trials.backend import Phase


def job() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "tj-0-1", "namespace": "ns", "labels": {"ktune.dev/trial": "0"}},
            "spec": {"parallelism": 1, "template": {"spec": {"containers": []}}}}


def pytorch_job() -> dict[str, Any]:
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "tj-0-1"},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1}}}}


def test_a_queued_job_is_created_suspended_with_the_queue_label_and_the_original_is_untouched() -> None:
    original = job()
    queued = queued_manifest(original, "gpus")
    assert queued["spec"]["suspend"] is True and suspended(queued)
    assert queued["metadata"]["labels"] == {"ktune.dev/trial": "0", QUEUE_LABEL: "gpus"}
    assert original == job()
    assert queued_manifest(original, None) == job()


def test_a_queued_kubeflow_job_is_suspended_through_its_run_policy() -> None:
    queued = queued_manifest(pytorch_job(), "gpus")
    assert queued["spec"]["runPolicy"] == {"suspend": True} and suspended(queued)
    assert "suspend" not in queued["spec"] and queued["metadata"]["labels"] == {QUEUE_LABEL: "gpus"}
    assert not suspended(pytorch_job())
    listed = {key: value for key, value in queued.items() if key not in ("kind", "apiVersion")}
    seen = admission_wait(listed, "gpus")
    assert seen is not None and seen.message.startswith("training job tj-0-1 waits")


def test_a_suspended_queued_job_waits_for_admission_and_an_admitted_or_unqueued_one_does_not() -> None:
    queued = queued_manifest(job(), "gpus")
    del queued["kind"], queued["apiVersion"]  # as a LIST's items come
    seen = admission_wait(queued, "gpus")
    assert seen is not None
    assert (seen.phase, seen.reason, seen.waiting_for) == (Phase.PENDING, "QueueAdmission", "queue")
    assert seen.message.startswith("Job tj-0-1 waits for Kueue to admit it from LocalQueue gpus")
    assert "kubectl get workloads -n ns" in seen.message
    queued["spec"]["suspend"] = False  # admitted by Kueue
    assert admission_wait(queued, "gpus") is None
    assert admission_wait({**job(), "spec": {"suspend": True}}, None) is None  # suspended by its author: no queue


def test_a_waiting_trial_is_shown_pending_and_read_back_as_running_without_a_reason() -> None:
    record = TrialRecord(number=0, params={"x": 1}, state=TrialState.RUNNING, started_at=0.0)
    status = trial_status(record, 1, "tj-0-1", 10, ("QueueAdmission", "Job tj-0-1 waits"))
    assert (status["state"], status["reason"], status["message"]) == ("Pending", "QueueAdmission", "Job tj-0-1 waits")
    trial = {"spec": {"tuningJob": "tj", "number": 0, "params": {"x": 1}}, "status": status}
    read = record_from_trial(trial)
    assert (read.state, read.reason, read.message) == (TrialState.RUNNING, None, None)
    finished = TrialRecord(number=0, params={}, state=TrialState.FAILED, reason="Error", started_at=0.0)
    assert trial_status(finished, 1, None, 10, ("QueueAdmission", "late"))["state"] == "Failed"


def test_ktune_status_shows_a_waiting_trial_pending_with_its_reason() -> None:
    body = {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob", "metadata": {"name": "q", "namespace": "ns"},
            "spec": {"objective": {"metric": "score"}, "parameters": [{"name": "x", "type": "float", "low": 0,
                                                                         "high": 1}],
                     "trial": {"queueName": "gpus", "resource": {"apiVersion": "batch/v1", "kind": "Job", "spec": {
                         "template": {"spec": {"containers": [{"name": "t", "image": "i"}]}}}}}}}
    records = [TrialRecord(number=0, params={"x": 0.1}, state=TrialState.RUNNING),
               TrialRecord(number=1, params={"x": 0.2}, state=TrialState.RUNNING)]
    report = status_report(ClusterStudy(body, load_tuningjob(body).spec, records, waiting={1: "QueueAdmission"}))
    rows = [line.split() for line in report.splitlines()[-2:]]
    assert rows[0][:2] == ["0", "Running"] and rows[1][:2] == ["1", "Pending"] and rows[1][-1] == "QueueAdmission"
