"""The rendezvous of an Indexed Job trial's ranks: the subdomain and torchrun's variables in the Job, and the
headless Service the operator makes for it after the Job, owned by it."""

from typing import Any

import pytest

from ktune import contract
from ktune.operator.cluster import ApiError, ApiResource
from ktune.operator.rendezvous import service_manifest, with_rendezvous
from ktune.trials.backend import LaunchRefused
from tests.operator.test_job_backend import FakeJobCluster, harness
from tests.operator.test_reconcile import NOW


def trial_job(name: str = "bert-3-1", **spec: Any) -> dict[str, Any]:
    containers = [{"name": "trainer", "env": [{"name": "KTUNE_PARAM_X", "value": "1"}]}, {"name": "sidecar"}]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {contract.LABEL_TUNINGJOB: "bert", contract.LABEL_TRIAL: "3",
                                              "team": "search"}},
        "spec": {"completionMode": "Indexed", "completions": 2, "parallelism": 2,
                 "template": {"spec": {"containers": containers}}, **spec},
    }


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def test_every_container_of_an_indexed_job_gets_torchruns_variables_and_the_pod_its_subdomain():
    made = with_rendezvous(trial_job())
    pod = made["spec"]["template"]["spec"]
    assert pod["subdomain"] == "bert-3-1"
    for container in pod["containers"]:
        assert env(container) | {"KTUNE_PARAM_X": "1"} == {
            # The Job controller names index 0's host <job>-0; the Service <job> makes it <job>-0.<job>.
            "MASTER_ADDR": "bert-3-1-0.bert-3-1", "MASTER_PORT": "29500", "WORLD_SIZE": "2",
            "RANK": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
            "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "KTUNE_PARAM_X": "1"}
    assert [var["name"] for var in pod["containers"][0]["env"]][-1] == "KTUNE_PARAM_X", "the template's own env last"


def test_a_variable_the_template_sets_is_kept():
    job = trial_job()
    job["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MASTER_PORT", "value": "23456"})
    trainer, sidecar = with_rendezvous(job)["spec"]["template"]["spec"]["containers"]
    assert [var["value"] for var in trainer["env"] if var["name"] == "MASTER_PORT"] == ["23456"]
    assert env(sidecar)["MASTER_PORT"] == "29500"


def test_a_subdomain_of_the_templates_own_is_kept_and_names_rank_0():
    job = trial_job()
    job["spec"]["template"]["spec"]["subdomain"] = "ranks"
    made = with_rendezvous(job)
    assert made["spec"]["template"]["spec"]["subdomain"] == "ranks"
    assert env(made["spec"]["template"]["spec"]["containers"][0])["MASTER_ADDR"] == "bert-3-1-0.ranks"


@pytest.mark.parametrize("spec", [{"completions": 1, "parallelism": 1}, {"completionMode": "NonIndexed"}])
def test_a_job_that_is_not_several_ranks_is_left_as_it_is(spec: dict[str, Any]):
    job = trial_job(**spec)
    assert with_rendezvous(job) == job


def test_a_job_name_that_cannot_name_a_service_refuses_the_attempt_before_any_pod_starts():
    with pytest.raises(LaunchRefused) as refused:
        with_rendezvous(trial_job("3d-model-0-1"))
    assert refused.value.reason == "ServiceNameInvalid" and "rename the TuningJob" in refused.value.message
    assert not refused.value.retryable


def test_the_service_is_headless_selects_the_jobs_pods_even_unready_and_is_owned_by_the_job():
    job = with_rendezvous(trial_job())
    job["metadata"]["uid"] = "job-uid"
    service = service_manifest(job)
    assert service["metadata"]["name"] == "bert-3-1"
    assert service["metadata"]["labels"] == {contract.LABEL_TUNINGJOB: "bert", contract.LABEL_TRIAL: "3"}
    assert service["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "bert-3-1", "uid": "job-uid", "controller": True}]
    assert service["spec"] == {"clusterIP": "None", "selector": {"batch.kubernetes.io/job-name": "bert-3-1"},
                               "publishNotReadyAddresses": True}


# ---- one reconcile pass at a time, against the fake API ----


def services(cluster: FakeJobCluster) -> dict[str, dict[str, Any]]:
    return cluster.trial_resources.get("services", {})


def test_each_attempt_gets_its_service_after_its_job_owned_by_that_job_and_a_retry_a_new_one():
    test, cluster = harness(max_trials=1, parallelism=1, retries=1)
    test.tick()
    job = cluster.trial_jobs["job-0-1"]
    assert job["spec"]["template"]["spec"]["subdomain"] == "job-0-1"
    assert sorted(services(cluster)) == ["job-0-1"]
    assert services(cluster)["job-0-1"]["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    cluster.set_condition("job-0-1", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    test.tick(NOW + 1)
    assert sorted(services(cluster)) == ["job-0-1", "job-0-2"]
    assert services(cluster)["job-0-2"]["metadata"]["ownerReferences"][0]["uid"] == \
        cluster.trial_jobs["job-0-2"]["metadata"]["uid"]


class ServiceCreateFailsOnce(FakeJobCluster):
    """The API server fails the first Service create (a 503), as when the operator dies right after the Job."""

    failed = False

    def create_trial_resource(self, namespace: str, resource: ApiResource, manifest: Any) -> dict[str, Any]:
        if resource.plural == "services" and not self.failed:
            self.failed = True
            raise ApiError(503, "the server is currently unable to handle the request")
        return super().create_trial_resource(namespace, resource, manifest)


def test_a_service_not_made_after_its_job_is_made_for_the_same_job_at_the_next_pass():
    test, _ = harness(max_trials=1, parallelism=1)
    test.cluster = cluster = ServiceCreateFailsOnce()
    test.reconciler = test.fresh_reconciler()
    with pytest.raises(ApiError):
        test.tick()
    assert sorted(cluster.trial_jobs) == ["job-0-1"] and services(cluster) == {}
    cluster.start_job_pods("job-0-1")
    test.tick(NOW + 1)
    assert sorted(cluster.trial_jobs) == ["job-0-1"], "the Job is adopted, not made again"
    assert cluster.deleted_jobs == [], "nor taken for a stray while its launch is pending"
    assert services(cluster)["job-0-1"]["metadata"]["ownerReferences"][0]["uid"] == \
        cluster.trial_jobs["job-0-1"]["metadata"]["uid"]
    test.reconciler = test.fresh_reconciler()  # a restart: the Service that exists is the attempt's own
    test.tick(NOW + 2)
    assert sorted(services(cluster)) == ["job-0-1"] and test.trial_states() == {"job-0": "Running"}
    assert cluster.deleted_jobs == []


def test_a_service_name_held_by_another_object_holds_the_launch_until_it_is_gone():
    test, cluster = harness(max_trials=1, parallelism=1)
    cluster.trial_resources["services"] = {"job-0-1": {"metadata": {
        "name": "job-0-1", "uid": "theirs", "labels": {contract.LABEL_TUNINGJOB: "job"}}}}
    status = test.tick()
    waiting = next(c for c in status["conditions"] if c["type"] == "TrialsWaiting")
    assert (waiting["status"], waiting["reason"]) == ("True", "ServiceNameTaken")
    assert "Service job-0-1 exists and is not this trial's Job's (its controller: none)" in waiting["message"]
    assert services(cluster)["job-0-1"]["metadata"]["uid"] == "theirs"
    cluster.start_job_pods("job-0-1")  # the Job, made before its Service, is kept: its ranks wait for rank 0's name
    del services(cluster)["job-0-1"]
    status = test.tick(NOW + 1)
    assert sorted(cluster.trial_jobs) == ["job-0-1"] and cluster.deleted_jobs == []
    assert services(cluster)["job-0-1"]["metadata"]["ownerReferences"][0]["uid"] == \
        cluster.trial_jobs["job-0-1"]["metadata"]["uid"]
    assert not [c for c in status["conditions"] if c["type"] == "TrialsWaiting" and c["status"] == "True"]
