"""What each attempt of a trial runs (its kind and pod count), in the Trial's status, the Trial CRD's printer
columns and `ktune status` (#15 item 2)."""

from typing import Any

from ktune import metrics
from ktune.algorithms import load_tuningjob
from ktune.engine import TrialRecord, TrialState
from ktune.operator.inspection import ClusterStudy, status_report
from ktune.operator.trials import AttemptShape, recorded_attempt, trial_status
from ktune.spec.crd_schema import trial_crd
from tests.operator.test_job_backend import FakeJobCluster, job_trial_body
from tests.operator.test_reconcile import Harness, job_body

RECORD = TrialRecord(number=0, params={"lr": 0.1}, state=TrialState.SUCCEEDED, values=[0.5])


def indexed_job_body(pods: int = 2) -> dict[str, Any]:
    body = job_body()
    template = body["spec"]["trial"].pop("template")
    body["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job", "spec": {
        "completionMode": "Indexed", "completions": pods, "parallelism": pods, "template": template}}
    return body


def test_a_pod_trials_status_names_its_pod_and_says_one_pod():
    status = trial_status(RECORD, 1, "job-0-1", 100)
    assert (status["kind"], status["pods"], status["podName"], status["resourceName"]) == ("Pod", 1, "job-0-1", None)


def test_a_resource_trials_status_names_its_resource_not_a_pod():
    status = trial_status(RECORD, 2, "job-0-2", 100, shape=AttemptShape("PyTorchJob", 3))
    assert (status["kind"], status["pods"], status["resourceName"], status["podName"]) == (
        "PyTorchJob", 3, "job-0-2", None)


def test_the_shape_is_the_specs_and_reads_back_from_the_trial():
    spec = load_tuningjob(indexed_job_body(pods=3)).spec
    shape = AttemptShape.of(spec.trial)
    assert shape == AttemptShape("Job", 3)
    assert AttemptShape.of(load_tuningjob(job_body()).spec.trial) == AttemptShape("Pod", 1)
    trial = {"spec": {"number": 0}, "status": trial_status(RECORD, 1, "job-0-1", 100, shape=shape)}
    assert recorded_attempt(trial) == ("job-0-1", shape)


def test_a_trial_written_before_shapes_were_recorded_reads_as_one_pod_with_its_pod_name():
    assert recorded_attempt({"spec": {"number": 0}, "status": {"podName": "job-0-1"}}) == (
        "job-0-1", AttemptShape())
    assert recorded_attempt({"spec": {"number": 0}}) == (None, AttemptShape())


def test_the_trial_crd_shows_kind_and_pods_by_default_and_the_resource_name_wide():
    columns = {c["name"]: c for c in trial_crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Kind"]["jsonPath"] == ".status.kind" and "priority" not in columns["Kind"]
    assert columns["Pods"] == {"name": "Pods", "type": "integer", "jsonPath": ".status.pods",
                               "description": "Pods each attempt runs at once."}
    assert columns["Resource"]["jsonPath"] == ".status.resourceName" and columns["Resource"]["priority"] == 1
    status = trial_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"kind", "pods", "podName", "resourceName"} <= set(status)


def test_ktune_status_shows_each_trials_kind_and_pods():
    body = indexed_job_body(pods=3)
    spec = load_tuningjob(body).spec
    records = [RECORD, TrialRecord(number=1, params={"lr": 0.2}, state=TrialState.RUNNING)]
    # Trial 0 recorded its shape; trial 1 has no status yet and shows what the spec runs.
    report = status_report(ClusterStudy(body, spec, records, {0: AttemptShape("PyTorchJob", 2)}))  # recorded wins
    table = report.splitlines()[-3:]
    assert table[0].split()[:4] == ["TRIAL", "STATE", "KIND", "PODS"]
    assert table[1].split()[:4] == ["0", "Succeeded", "PyTorchJob", "2"]
    assert table[2].split()[:4] == ["1", "Running", "Job", "3"]


def test_a_job_trials_status_and_events_name_its_job_and_its_pods():
    def scrape(url: str, timeout: float) -> metrics.TrialMetrics:
        return metrics.TrialMetrics(values={"score": 0.01}, step=1)  # below the threshold: pruned

    test = Harness(job_trial_body(max_trials=1, parallelism=1, pruner={"name": "threshold", "options": {"lower": 0.5}}),
                   scrape=scrape)
    test.cluster = cluster = FakeJobCluster()
    test.reconciler = test.fresh_reconciler()
    test.tick()
    status = cluster.trials["job-0"]["status"]
    assert (status["kind"], status["pods"], status["resourceName"]) == ("Job", 2, "job-0-1")
    assert status.get("podName") is None
    cluster.start_job_pods("job-0-1")
    test.tick()
    assert test.trial_states()["job-0"] == "Pruned"
    pruned = [message for _, reason, message in cluster.events if reason == "TrialPruned"]
    assert pruned == ["job-0 pruned at step 1; its Job (with its 2 pods) job-0-1 was deleted"]
