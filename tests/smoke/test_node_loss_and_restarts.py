"""The harness survives what the reliability tests do to it: API server restarts and killed nodes."""

from pathlib import Path

import kubernetes
import pytest

from tests.cluster.controlplane import Cluster, NodeAgentProcess
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster

PID_SCRIPT = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"


def sleeper(name: str, node: str | None = None) -> dict:
    spec: dict = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "python:3.11-slim", "command": ["python", "-c", PID_SCRIPT]}],
    }
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def process_is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_node_agent_keeps_running_pods_across_an_api_server_restart(
    cluster: Cluster, node_agent: NodeAgentProcess | None, namespace: str
) -> None:
    if cluster.control_plane is None:
        raise AssertionError("this test restarts the API server: run it against the test control plane")
    core = kubernetes.client.CoreV1Api(cluster.api)
    cluster.restart_apiserver(downtime=2)
    core.create_namespaced_pod(namespace, sleeper("after-restart"))
    pod = wait_until(
        lambda: (p := core.read_namespaced_pod("after-restart", namespace)).status.phase == "Running" and p,
        "a pod created after the restart to run",
        timeout=90,
    )
    assert pod.spec.node_name == node_agent.name


def test_killed_node_agent_takes_its_pods_down_and_its_node_goes_not_ready(
    cluster: Cluster, node_agent: NodeAgentProcess | None, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    doomed = cluster.start_node_agent("ktune-node-doomed", cpu="2", memory="4Gi")
    try:
        core.create_namespaced_pod(namespace, sleeper("on-doomed-node", node=doomed.name))
        log = wait_until(
            lambda: (doomed.pod_dir(namespace, "on-doomed-node") / "container.log").read_text().strip(),
            "the pod on the doomed node to print its pid",
        )
        pid = int(log)
        doomed.kill()
        wait_until(lambda: process_is_gone(pid), "the pod process to die with its node agent")

        def not_ready() -> bool:
            conditions = core.read_node(doomed.name).status.conditions
            return any(c.type == "Ready" and c.status == "Unknown" for c in conditions)

        wait_until(not_ready, "the node lifecycle controller to mark the lost node Unknown", timeout=120)
    finally:
        doomed.kill()
        core.delete_node(doomed.name)
