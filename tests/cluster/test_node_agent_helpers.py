"""The node agent's pure helpers: resource requests, downward-API fields, termination messages."""

from pathlib import Path

import pytest

from tests.cluster.node_agent import MAX_MESSAGE_BYTES, NodeAgent, PodSpecError, field_value, pod_requests

POD = {
    "metadata": {
        "name": "trial-3",
        "namespace": "tuning",
        "uid": "abc",
        "labels": {"ktune.dev/trial": "3"},
        "annotations": {"note": "hi"},
    },
    "spec": {
        "nodeName": "node-a",
        "serviceAccountName": "trainer",
        "containers": [
            {"name": "a", "resources": {"limits": {"cpu": "2", "nvidia.com/gpu": "1"}, "requests": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"memory": "1Gi"}}},
        ],
        "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "4"}}}],
    },
    "status": {"podIP": "127.10.0.2"},
}


def test_requests_sum_containers_fall_back_to_limits_and_take_the_init_maximum() -> None:
    assert pod_requests(POD) == {"pods": 1.0, "cpu": 4.0, "nvidia.com/gpu": 1.0, "memory": 1024.0**3}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "trial-3"),
        ("metadata.namespace", "tuning"),
        ("metadata.labels['ktune.dev/trial']", "3"),
        ("metadata.annotations['note']", "hi"),
        ("metadata.labels['missing']", ""),
        ("status.podIP", "127.10.0.2"),
        ("spec.nodeName", "node-a"),
        ("spec.serviceAccountName", "trainer"),
    ],
)
def test_field_ref_paths_resolve_like_the_downward_api(path: str, value: str) -> None:
    assert field_value(POD, path) == value


def test_unsupported_field_ref_names_the_path() -> None:
    with pytest.raises(PodSpecError, match=r"metadata\.generation"):
        field_value(POD, "metadata.generation")


def test_termination_message_falls_back_to_the_log_tail_only_on_failure(tmp_path: Path) -> None:
    (tmp_path / "termination-log").write_text("")
    (tmp_path / "container.log").write_text("".join(f"line {i}\n" for i in range(200)))
    container = {"name": "a", "terminationMessagePolicy": "FallbackToLogsOnError"}
    assert NodeAgent.termination_message(container, tmp_path, exit_code=0) == ""
    failed = NodeAgent.termination_message(container, tmp_path, exit_code=1)
    assert failed.endswith("line 199") and "line 119" not in failed


def test_termination_message_keeps_the_last_4096_bytes(tmp_path: Path) -> None:
    (tmp_path / "termination-log").write_text("x" * 5000 + "END")
    message = NodeAgent.termination_message({"name": "a"}, tmp_path, exit_code=0)
    assert len(message) == MAX_MESSAGE_BYTES and message.endswith("END")
