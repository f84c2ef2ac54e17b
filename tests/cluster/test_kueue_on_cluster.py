"""Kueue's real controller (built from its pinned module) admits queued batch/v1 Jobs by GPU quota."""

import time

import kubernetes
import pytest

from tests.cluster.controlplane import Cluster

pytestmark = pytest.mark.cluster

KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOBS = 4
GPU_QUOTA = 2


def job(name: str, queue: str) -> dict:
    """A suspended 1-GPU Job in ``queue``; it runs long enough for two admitted Jobs to overlap."""
    container = {
        "name": "main",
        "image": "ignored-by-the-node-agent",
        "command": ["python", "-c", "import time; time.sleep(5)"],
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def finished(job: kubernetes.client.V1Job) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])


def running(job: kubernetes.client.V1Job) -> bool:
    """Admitted (unsuspended by Kueue) and not finished: holding its quota."""
    return job.spec.suspend is False and not finished(job)


def test_cluster_queue_with_two_gpus_runs_four_one_gpu_jobs_two_at_a_time(
    cluster: Cluster, node_agent: object, kueue: object, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    batch = kubernetes.client.BatchV1Api(cluster.api)
    flavor, cluster_queue = f"{namespace}-flavor", f"{namespace}-gpus"
    custom.create_cluster_custom_object(
        KUEUE_GROUP, KUEUE_VERSION, "resourceflavors",
        {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "ResourceFlavor", "metadata": {"name": flavor}},
    )  # fmt: skip
    quota = {"name": "nvidia.com/gpu", "nominalQuota": GPU_QUOTA}
    custom.create_cluster_custom_object(
        KUEUE_GROUP, KUEUE_VERSION, "clusterqueues",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "ClusterQueue",
            "metadata": {"name": cluster_queue},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {"coveredResources": ["nvidia.com/gpu"], "flavors": [{"name": flavor, "resources": [quota]}]}
                ],
            },
        },
    )  # fmt: skip
    custom.create_namespaced_custom_object(
        KUEUE_GROUP, KUEUE_VERSION, namespace, "localqueues",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "LocalQueue",
            "metadata": {"name": "trials"},
            "spec": {"clusterQueue": cluster_queue},
        },
    )  # fmt: skip
    try:
        start = batch.list_namespaced_job(namespace).metadata.resource_version
        names = [f"trial-{i}" for i in range(JOBS)]
        for name in names:
            batch.create_namespaced_job(namespace, job(name, "trials"))
        most_running, states = watch_jobs(batch, namespace, start, set(names), timeout=400)
        assert all(not states[name].spec.suspend for name in names)
        assert [n for n in names if not any(c.type == "Complete" for c in states[n].status.conditions or [])] == []
        # Kueue admitted both of the first two at once (quota 2) and never a third while they held it.
        assert most_running == GPU_QUOTA
    finally:
        custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", cluster_queue)
        custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "resourceflavors", flavor)


def watch_jobs(
    batch: kubernetes.client.BatchV1Api, namespace: str, resource_version: str, names: set[str], timeout: float
) -> tuple[int, dict[str, kubernetes.client.V1Job]]:
    """Follow every change of the Jobs in order until all ``names`` finished; the most running at once."""
    states: dict[str, kubernetes.client.V1Job] = {}
    most = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream = kubernetes.watch.Watch().stream(
            batch.list_namespaced_job, namespace, resource_version=resource_version, timeout_seconds=30
        )
        for event in stream:
            obj = event["object"]
            resource_version = obj.metadata.resource_version
            if obj.metadata.name in names:
                states[obj.metadata.name] = obj
                most = max(most, sum(running(j) for j in states.values()))
            if set(states) == names and all(finished(j) for j in states.values()):
                return most, states
    summary = {name: (j.spec.suspend, [c.type for c in j.status.conditions or []]) for name, j in states.items()}
    raise AssertionError(f"not all of {sorted(names)} finished within {timeout:.0f} s: {summary}")


def test_kueues_webhook_suspends_a_queued_job_at_creation_and_leaves_others_alone(
    cluster: Cluster, kueue: object, namespace: str
) -> None:
    batch = kubernetes.client.BatchV1Api(cluster.api)
    queued = job("queued", "no-such-queue")
    del queued["spec"]["suspend"]
    plain = job("plain", "unused")
    del plain["spec"]["suspend"]
    del plain["metadata"]["labels"]
    # The create answer is the object as admitted: Kueue's mutating webhook has run on it, or not.
    assert batch.create_namespaced_job(namespace, queued).spec.suspend is True
    assert batch.create_namespaced_job(namespace, plain).spec.suspend is False
