"""What the test node agent promises pods: GPU accounting, OOMKilled by exit code, OnFailure restarts."""

from collections.abc import Iterator

import kubernetes
import pytest

from tests.cluster.controlplane import Cluster, NodeAgentProcess
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster

NODE = "ktune-node-agent-tests"


@pytest.fixture(scope="module")
def gpu_node(cluster: Cluster) -> Iterator[NodeAgentProcess]:
    """A node agent of this module's own (2 GPUs), so these tests run the same on any cluster."""
    agent = cluster.start_node_agent(NODE, cpu="4", memory="8Gi", gpus=2)
    yield agent
    agent.stop()
    kubernetes.client.CoreV1Api(cluster.api).delete_node(NODE)


def pod(name: str, script: str, restart_policy: str = "Never", gpus: int = 0) -> dict:
    container: dict = {"name": "main", "image": "python:3.11-slim", "command": ["python", "-c", script]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {"kubernetes.io/hostname": NODE},
            "containers": [container],
        },
    }


def finished(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> kubernetes.client.V1Pod:
    def done() -> kubernetes.client.V1Pod | None:
        got = core.read_namespaced_pod(name, namespace)
        return got if got.status.phase in ("Succeeded", "Failed") else None

    return wait_until(done, f"pod {namespace}/{name} to finish", timeout=90)


def test_exit_code_137_is_reported_as_oom_killed(cluster: Cluster, gpu_node: NodeAgentProcess, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, pod("oom", "import sys; sys.exit(137)"))
    terminated = finished(core, namespace, "oom").status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


def test_pod_asking_for_more_gpus_than_the_node_has_stays_pending_as_unschedulable(
    cluster: Cluster, gpu_node: NodeAgentProcess, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, pod("greedy", "print('never runs')", gpus=3))

    def unschedulable() -> bool:
        got = core.read_namespaced_pod("greedy", namespace)
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in got.status.conditions or [])

    wait_until(unschedulable, "the greedy pod to be marked Unschedulable")
    got = core.read_namespaced_pod("greedy", namespace)
    assert (got.spec.node_name, got.status.phase) == (None, "Pending")


def test_gpu_pod_within_capacity_runs(cluster: Cluster, gpu_node: NodeAgentProcess, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, pod("two-gpus", "print('ok')", gpus=2))
    assert finished(core, namespace, "two-gpus").status.phase == "Succeeded"


def test_on_failure_pod_is_restarted_until_it_succeeds(
    cluster: Cluster, gpu_node: NodeAgentProcess, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    script = "import os, sys\nif not os.path.exists('tried'):\n    open('tried', 'w').close()\n    sys.exit(3)\n"
    core.create_namespaced_pod(namespace, pod("flaky", script, restart_policy="OnFailure"))
    got = finished(core, namespace, "flaky")
    status = got.status.container_statuses[0]
    assert got.status.phase == "Succeeded"
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 3


def test_job_controller_runs_a_job_to_completion_through_the_node_agent(
    cluster: Cluster, gpu_node: NodeAgentProcess, namespace: str
) -> None:
    template = pod("unused", "print('job done')")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": template["spec"]}},
    }
    batch = kubernetes.client.BatchV1Api(cluster.api)
    batch.create_namespaced_job(namespace, job)

    def complete() -> bool:
        conditions = batch.read_namespaced_job_status("once", namespace).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conditions)

    wait_until(complete, "the Job to complete", timeout=90)
