"""Event-driven reconcile on the real control plane: with the periodic pass an hour away, only events can move a
job along, so a job that moves at all was woken by them (no wall-clock thresholds: the waits are generous bounds,
far below the hour)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster

AN_HOUR = "3600"


@pytest.fixture
def event_driven_operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator with its safety-net pass an hour away, keeping succeeded pods (the test reads their times)."""
    process = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log",
                              extra_env={"KTUNE_OPERATOR_RECONCILE_INTERVAL_SECONDS": AN_HOUR,
                                         "KTUNE_OPERATOR_DELETE_SUCCEEDED_PODS": "false"}).start()
    yield process
    process.stop()


def test_a_finished_pod_wakes_its_job_at_once(cluster: Cluster, namespace: str,
                                              event_driven_operator: OperatorProcess):
    apply(cluster, stand_in_job("chain", namespace, budget={"maxTrials": 3, "parallelism": 1},
                                args=["--steps", "1", "--step-seconds", "0"]))
    # One trial at a time: trial n+1 is started by the pass that saw trial n's pod end, and the job finishes in
    # the pass that saw the last one end.
    job = wait_finished(cluster, namespace, "chain", 120, event_driven_operator)

    assert job["status"]["phase"] == "Succeeded"
    trials = trials_of(cluster, namespace, "chain")
    assert sorted(trials) == [0, 1, 2]
    assert {trial["status"]["state"] for trial in trials.values()} == {"Succeeded"}
    pods = {pod["metadata"]["name"]: pod for pod in get(cluster, "pods", namespace)["items"]}
    for number in (1, 2):
        earlier = pods[f"chain-{number - 1}-1"]["status"]["containerStatuses"][0]["state"]["terminated"]
        assert pods[f"chain-{number}-1"]["metadata"]["creationTimestamp"] >= earlier["finishedAt"]


def test_an_edited_running_job_is_woken_at_once_and_its_deletion_stops_its_loop(
    cluster: Cluster, namespace: str, event_driven_operator: OperatorProcess
):
    apply(cluster, stand_in_job("widened", namespace, budget={"maxTrials": 2, "parallelism": 1},
                                args=["--steps", "400", "--step-seconds", "0.5"]))
    wait_for(lambda: len(get(cluster, "pods", namespace)["items"]) == 1, 60, "the first trial pod",
             event_driven_operator)

    cluster.kubectl("patch", "tuningjob", "widened", "-n", namespace, "--type=merge",
                    "-p", '{"spec": {"budget": {"parallelism": 2}}}')
    wait_for(lambda: len(get(cluster, "pods", namespace)["items"]) == 2, 60,
             "a second trial pod, started by the pass the edit woke", event_driven_operator)

    # kopf's finalizer stays until the job's loop has exited: a loop waiting out its hour would hold the deletion.
    deleted = cluster.kubectl("delete", "tuningjob", "widened", "-n", namespace, "--timeout=60s", check=False,
                              timeout=70)
    assert deleted.returncode == 0, deleted.stderr + event_driven_operator.log()[-4000:]
