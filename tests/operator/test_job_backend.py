"""Job trials (`spec.trial.resource`) one reconcile pass at a time against the in-process fake API: the Job made,
its outcome from its conditions, index 0 as the metrics pod, restarts, names held by others, stopping."""

import copy
import json
from typing import Any

from ktune import contract
from ktune.spec.resource_kinds import COMPLETION_INDEX_LABEL
from tests.operator.fake_cluster import FakeCluster
from tests.operator.test_reconcile import NOW, Harness, job_body


class FakeJobCluster(FakeCluster):
    """The fake API's batch/v1 Jobs by name; tests play the Job controller (pods, conditions)."""

    def __init__(self) -> None:
        super().__init__()
        self.trial_jobs = self.trial_resources.setdefault("jobs", {})
        self.deleted_jobs = self.deleted_resources

    def start_job_pods(self, name: str, ip: str = "10.0.0.") -> list[str]:
        """The Job controller's pods of an Indexed Job, one per index, Running."""
        job = self.trial_jobs[name]
        template = job["spec"]["template"]
        names = []
        for index in range(job["spec"]["parallelism"]):
            pod_name = f"{name}-{index}-abcde"
            labels = {**template["metadata"]["labels"], COMPLETION_INDEX_LABEL: str(index)}
            self.pods[pod_name] = {
                "metadata": {"name": pod_name, "labels": labels, "creationTimestamp": "2026-01-01T00:00:01Z",
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                                  "uid": job["metadata"]["uid"], "controller": True}]},
                "spec": copy.deepcopy(template["spec"]),
                "status": {"phase": "Running", "podIP": f"{ip}{index + 1}"},
            }
            names.append(pod_name)
        return names

    def set_condition(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        self.trial_jobs[name]["status"] = {"conditions": [
            {"type": kind, "status": "True", "reason": reason, "message": message}]}


def job_trial_body(**spec: Any) -> dict:
    body = job_body(**spec)
    template = body["spec"]["trial"].pop("template")
    template["spec"]["containers"].append({"name": "sidecar", "command": ["sleep"]})
    body["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job", "spec": {
        "completionMode": "Indexed", "completions": 2, "parallelism": 2, "template": template}}
    return body


def harness(**spec: Any) -> tuple[Harness, FakeJobCluster]:
    test = Harness(job_trial_body(**spec))
    test.cluster = FakeJobCluster()
    test.reconciler = test.fresh_reconciler()
    assert isinstance(test.cluster, FakeJobCluster)
    return test, test.cluster


def test_each_attempt_is_a_job_owned_by_its_trial_with_the_contract_in_every_container():
    test, cluster = harness(max_trials=1, parallelism=1)
    test.tick()
    assert cluster.pods == {} and sorted(cluster.trial_jobs) == ["job-0-1"]
    job = cluster.trial_jobs["job-0-1"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == cluster.trials["job-0"]["metadata"]["uid"]
    assert job["metadata"]["labels"][contract.LABEL_TRIAL] == "0"
    assert (job["spec"]["completionMode"], job["spec"]["parallelism"], job["spec"]["backoffLimit"]) == ("Indexed", 2, 0)
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"][contract.LABEL_TUNINGJOB] == "job"
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["automountServiceAccountToken"] is False
    for container in pod["spec"]["containers"]:
        names = {var["name"] for var in container["env"]}
        assert {"KTUNE_PARAM_X", "KTUNE_TRIAL_PARAMS", "KTUNE_TRIAL_NUMBER", "KTUNE_TUNINGJOB"} <= names
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_a_complete_job_succeeds_with_index_0s_termination_message_and_is_deleted():
    test, cluster = harness(max_trials=1, parallelism=1)
    test.tick()
    first, second = cluster.start_job_pods("job-0-1")
    for name, value in ((first, 0.9), (second, 0.1)):
        cluster.pods[name]["status"] = {"phase": "Succeeded", "containerStatuses": [{"name": "t", "state": {
            "terminated": {"exitCode": 0, "message": json.dumps({"score": value})}}}]}
    test.tick(NOW + 1)
    assert test.trial_states() == {"job-0": "Running"}, "no outcome before the Job controller says Complete"
    cluster.set_condition("job-0-1", "Complete")
    status = test.tick(NOW + 2)
    assert cluster.trials["job-0"]["status"]["value"] == 0.9
    assert status["phase"] == "Succeeded"
    assert cluster.deleted_jobs == ["job-0-1"]


def test_a_failed_job_fails_the_trial_with_its_reason_and_the_failed_pods_exit_code_and_a_retry_is_a_new_job():
    test, cluster = harness(max_trials=1, parallelism=1, retries=1)
    test.tick()
    _, second = cluster.start_job_pods("job-0-1")
    cluster.pods[second]["status"] = {"phase": "Failed", "containerStatuses": [{"name": "t", "state": {
        "terminated": {"exitCode": 3, "reason": "Error"}}}]}
    cluster.set_condition("job-0-1", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    test.tick(NOW + 1)
    assert sorted(cluster.trial_jobs) == ["job-0-1", "job-0-2"], "the failed Job stays for its logs"
    _, failed = cluster.start_job_pods("job-0-2")
    cluster.pods[failed]["status"] = {"phase": "Failed", "containerStatuses": [{"name": "t", "state": {
        "terminated": {"exitCode": 3, "reason": "Error"}}}]}
    cluster.set_condition("job-0-2", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    test.tick(NOW + 2)
    trial = cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"], trial["attempts"]) == ("Failed", "BackoffLimitExceeded", 2)
    assert trial["message"] == "Job has reached the specified backoff limit (pod job-0-2-1-abcde: Error, exit code 3)"


def test_a_restarted_operator_adopts_the_running_job_and_creates_none():
    test, cluster = harness(max_trials=1, parallelism=1)
    test.tick()
    cluster.start_job_pods("job-0-1")
    test.reconciler = test.fresh_reconciler()
    test.tick(NOW + 1)
    assert sorted(cluster.trial_jobs) == ["job-0-1"] and cluster.deleted_jobs == []
    assert test.trial_states() == {"job-0": "Running"}


def test_a_job_name_held_by_another_owner_is_waited_for_not_taken():
    test, cluster = harness(max_trials=1, parallelism=1)
    cluster.trial_jobs["job-0-1"] = {"metadata": {"name": "job-0-1", "uid": "stranger", "labels": {
        contract.LABEL_TUNINGJOB: "job"}, "ownerReferences": [{"uid": "old-trial", "controller": True}]}}
    test.tick()
    assert cluster.trial_jobs["job-0-1"]["metadata"]["uid"] == "stranger" and cluster.deleted_jobs == []
    assert test.trial_states() == {"job-0": "Running"}
    del cluster.trial_jobs["job-0-1"]
    test.tick(NOW + 1)
    assert cluster.trial_jobs["job-0-1"]["metadata"]["ownerReferences"][0]["uid"] == \
        cluster.trials["job-0"]["metadata"]["uid"]


def test_a_job_that_becomes_invalid_deletes_its_running_trials_jobs_in_the_foreground():
    test, cluster = harness(max_trials=1, parallelism=1)
    test.tick()
    cluster.start_job_pods("job-0-1")
    test.body["spec"]["budget"] = {"maxTrials": 0}
    test.tick(NOW + 1)
    assert cluster.deleted_jobs == ["job-0-1"]
    assert cluster.trials["job-0"]["status"]["state"] == "Failed"


def test_a_job_whose_metrics_pod_never_appears_fails_after_the_unschedulable_timeout_and_is_deleted():
    test, cluster = harness(max_trials=1, parallelism=1)
    created = 1_767_225_600.0  # the fake's creationTimestamp of every Job, 2026-01-01T00:00:00Z
    test.tick(created)
    timeout = test.reconciler.settings.unschedulable_timeout_seconds
    test.tick(created + timeout - 1)
    assert test.trial_states() == {"job-0": "Running"} and cluster.deleted_jobs == []
    test.tick(created + timeout + 1)
    trial = cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"]) == ("Failed", "MetricsUnavailable")
    assert "Job job-0-1 has no pod yet" in trial["message"]
    assert cluster.deleted_jobs == ["job-0-1"]


def test_index_0_done_while_another_index_runs_waits_for_the_jobs_verdict_without_scraping_or_timing_out():
    scraped: list[str] = []
    test, cluster = harness(max_trials=1, parallelism=1)
    test.scrape = lambda url, timeout: scraped.append(url)  # type: ignore[assignment, return-value]
    test.reconciler = test.fresh_reconciler()
    test.tick()
    first, _ = cluster.start_job_pods("job-0-1")
    cluster.pods[first]["status"] = {"phase": "Succeeded", "containerStatuses": [{"name": "t", "state": {
        "terminated": {"exitCode": 0, "message": json.dumps({"score": 0.5})}}}]}
    test.tick(NOW + 10 * test.reconciler.settings.metrics_unavailable_timeout_seconds)
    assert test.trial_states() == {"job-0": "Running"} and scraped == []
    cluster.set_condition("job-0-1", "Complete")
    test.tick(NOW + 20 * test.reconciler.settings.metrics_unavailable_timeout_seconds)
    assert cluster.trials["job-0"]["status"]["value"] == 0.5


def test_a_stopped_trials_job_left_running_by_a_crash_is_deleted_and_a_failed_one_only_after_the_retention():
    test, cluster = harness(max_trials=2, parallelism=2)
    test.tick()
    for name in ("job-0-1", "job-1-1"):
        cluster.start_job_pods(name)
    # A crash between writing trial 0's outcome (pruned) and deleting its Job; trial 1's Job failed just now.
    cluster.patch_trial_status("ns", "job-0", {"state": "Pruned", "reason": "PrunedByPruner", "values": [0.1],
                                               "finishTime": "2027-01-15T08:00:00Z"})
    cluster.set_condition("job-1-1", "Failed", "BackoffLimitExceeded", "backoff limit")
    cluster.trial_jobs["job-1-1"]["status"]["conditions"][0]["lastTransitionTime"] = "2027-01-15T08:00:00Z"
    test.reconciler = test.fresh_reconciler()
    test.tick(NOW + 10)  # NOW is 2027-01-15T08:00:00Z: 10 s after both
    assert cluster.deleted_jobs == ["job-0-1"], "the stray running Job goes; the failed one stays for its logs"
    retention = test.reconciler.settings.failed_pod_retention_seconds
    test.tick(NOW + retention + 1)
    assert sorted(cluster.deleted_jobs) == ["job-0-1", "job-1-1"]
