"""The operator's API client against the real API server: LISTs read page by page, and Events are best effort."""

import json
import logging

import pytest
from kubernetes import client, config

from ktune.operator.cluster import KubeCluster
from tests.cluster.controlplane import Cluster

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
