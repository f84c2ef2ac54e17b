"""The node agent's containerLogs endpoint, read as any client reads a pod's log: through kube-apiserver's
`pods/log`, which proxies to the node (kubectl logs, the operator's `metricsSource: logs`)."""

import datetime

import kubernetes
import pytest

from tests.cluster.controlplane import Cluster, NodeAgentProcess
from tests.cluster.kubelet_logs import select_lines
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster

SCRIPT = "import time\nfor i in range(5):\n    print(f'epoch={i} loss={1 / (i + 1):.3f}', flush=True)\n"


def test_pods_log_is_served_through_the_api_server(cluster: Cluster, node_agent: NodeAgentProcess | None,
                                                    namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "printer"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "trainer", "image": "python:3.11-slim", "command": ["python", "-c", SCRIPT]}]},
    })
    wait_until(lambda: core.read_namespaced_pod("printer", namespace).status.phase == "Succeeded",
               "the pod to succeed", timeout=120)
    plain = core.read_namespaced_pod_log("printer", namespace, container="trainer")
    assert plain.splitlines() == [f"epoch={i} loss={1 / (i + 1):.3f}" for i in range(5)]

    stamped = core.read_namespaced_pod_log("printer", namespace, container="trainer", timestamps=True)
    stamps = [line.split(" ", 1)[0] for line in stamped.splitlines()]
    assert [line.split(" ", 1)[1] for line in stamped.splitlines()] == plain.splitlines()
    assert stamps == sorted(stamps)
    first = datetime.datetime.fromisoformat(stamps[0].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.UTC) - first).total_seconds()) < 600

    tail = core.read_namespaced_pod_log("printer", namespace, container="trainer", tail_lines=2)
    assert tail.splitlines() == plain.splitlines()[-2:]
    limited = core.read_namespaced_pod_log("printer", namespace, container="trainer", limit_bytes=10)
    assert limited == plain[:10]
    later = (first + datetime.timedelta(seconds=3600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    since = ["logs", "printer", "-n", namespace, "-c", "trainer", "--since-time"]
    assert cluster.kubectl(*since, later).stdout == ""
    assert cluster.kubectl(*since, stamps[0][:19] + "Z").stdout == plain

    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.read_namespaced_pod_log("printer", namespace, container="other")
    assert refused.value.status == 400  # the API server knows the pod's containers


def test_since_time_keeps_lines_from_that_second_on() -> None:
    stamped = (b"2026-01-01T10:00:00.100000000Z a\n2026-01-01T10:00:01.000000000Z b\n"
               b"2026-01-01T10:00:01.900000000Z c\n2026-01-01T10:00:02.000000000Z d\n")
    query = {"sinceTime": "2026-01-01T10:00:01Z", "timestamps": "true"}
    assert select_lines(stamped, query).splitlines()[0].endswith(b" b")
    assert select_lines(stamped, {"sinceTime": "2026-01-01T10:00:01Z"}) == b"b\nc\nd\n"
    assert select_lines(stamped, {"tailLines": "1", "limitBytes": "1"}) == b"d"
