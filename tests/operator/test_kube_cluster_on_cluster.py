"""The operator's API client against the real API server: LISTs read page by page, Events are best effort, API
discovery tells a served kind from one no CRD serves, and a trial resource is deleted in the foreground."""

import json
import logging

import pytest
from kubernetes import client, config

from ktune.operator.cluster import ApiResource, KubeCluster
from tests.cluster.controlplane import Cluster
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster


def kube_cluster(cluster: Cluster, page_size: int) -> KubeCluster:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    return KubeCluster(client.ApiClient(configuration), page_size=page_size)


def test_a_list_longer_than_one_page_is_read_whole_page_by_page(cluster: Cluster, namespace: str):
    for i in range(7):
        labels = {"ktune.dev/tuningjob": "paged"}
        config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": f"page-{i}", "namespace": namespace, "labels": labels}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(config_map))
    api = kube_cluster(cluster, page_size=2)
    pages: list[dict] = []
    original = api.request

    def counting(method, path, query=None, body=None, content_type="application/json"):
        answer = original(method, path, query, body, content_type)
        pages.append(answer)
        return answer

    api.request = counting
    items = api.list_all(f"/api/v1/namespaces/{namespace}/configmaps", "ktune.dev/tuningjob=paged")
    assert sorted(item["metadata"]["name"] for item in items) == [f"page-{i}" for i in range(7)]
    assert [len(page["items"]) for page in pages] == [2, 2, 2, 1]


def test_an_event_the_api_refuses_is_logged_and_does_not_fail_the_caller(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
):
    api = kube_cluster(cluster, page_size=500)
    regarding = {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob",
                 "metadata": {"name": "ghost", "namespace": "no-such-namespace", "uid": "0"}}
    with caplog.at_level(logging.WARNING, logger="ktune.operator.cluster"):
        api.emit_event(regarding, "Normal", "TrialStarted", "ghost-0 started")
    assert "event TrialStarted not recorded" in caplog.text and "404" in caplog.text


def test_discovery_names_what_is_served_and_an_unserved_group_version_is_empty(cluster: Cluster):
    api = kube_cluster(cluster, page_size=500)
    assert "jobs" in api.served_resources("batch/v1") and "pods" in api.served_resources("v1")
    assert "jobs/status" not in api.served_resources("batch/v1")
    assert api.served_resources("no-such-group.example.com/v1") == frozenset()


def test_a_trial_resource_is_created_listed_by_the_jobs_label_and_deleted_in_the_foreground(
    cluster: Cluster, namespace: str
):
    api = kube_cluster(cluster, page_size=500)
    jobs = ApiResource("batch/v1", "jobs")
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "trial-job", "labels": {"ktune.dev/tuningjob": "owner"}},
        "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "t", "image": "example.com/t:1"}]}}}}
    created = api.create_trial_resource(namespace, jobs, manifest)
    assert [job["metadata"]["name"] for job in api.list_trial_resources(namespace, jobs, "owner")] == ["trial-job"]
    assert api.list_trial_resources(namespace, jobs, "another") == []
    # A dependent the test holds with a finalizer: a foreground deletion keeps the Job until it is gone.
    dependent = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "held", "namespace": namespace, "finalizers": ["ktune.dev/test-hold"], "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": "trial-job", "uid": created["metadata"]["uid"],
            "blockOwnerDeletion": True}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dependent))
    api.delete_trial_resource(namespace, jobs, "trial-job")
    deleting = api.list_trial_resources(namespace, jobs, "owner")[0]["metadata"]
    assert deleting["deletionTimestamp"] and "foregroundDeletion" in deleting["finalizers"]
    wait_until(lambda: cluster.kubectl("get", "configmap", "held", "-n", namespace, "-o",
                                       "jsonpath={.metadata.deletionTimestamp}").stdout,
               "the garbage collector to delete the Job's dependent first")
    assert api.list_trial_resources(namespace, jobs, "owner"), "the Job waits for its dependent"
    cluster.kubectl("patch", "configmap", "held", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"metadata": {"finalizers": None}}))
    wait_until(lambda: not api.list_trial_resources(namespace, jobs, "owner"), "the Job to be gone after it")
    api.delete_trial_resource(namespace, jobs, "trial-job")  # gone already: no error
