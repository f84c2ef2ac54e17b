"""A job that becomes invalid while its trials run stops them (they are not left Running with live pods), and an
Invalid message too long for the CRD is cut with a marker instead of failing every pass."""

import json

import pytest

from ktune.operator.status_writer import INVALID_MESSAGE_LIMIT, invalid_message
from tests.cluster.controlplane import Cluster
from tests.cluster.waiting import wait_until
from tests.operator.operator_harness import OperatorProcess, apply, condition, get, stand_in_job, trials_of


def test_an_invalid_message_longer_than_the_crd_allows_is_cut_with_a_marker():
    problems = [f"spec.parameters[{i}].name: duplicate parameter name (got 'x')" for i in range(500)]
    message = invalid_message(problems)
    assert len(message) == INVALID_MESSAGE_LIMIT
    assert message.startswith("invalid TuningJob:\nspec.parameters[0].name")
    assert message.endswith("`ktune validate FILE` lists every problem)")
    assert invalid_message(problems[:2]) == "invalid TuningJob:\n" + "\n".join(problems[:2])


@pytest.mark.cluster
def test_a_job_that_becomes_invalid_mid_run_fails_its_running_trial_and_deletes_its_pod(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    apply(cluster, stand_in_job("broken-later", namespace, budget={"maxTrials": 2, "parallelism": 1},
                                args=["--steps", "30", "--step-seconds", "1.0"]))

    def running_pod() -> list | None:
        pods = [pod for pod in get(cluster, "pods", namespace)["items"] if pod["status"].get("phase") == "Running"]
        return pods or None

    wait_until(running_pod, "the first trial's pod to run", timeout=60)
    # The template is free-form for the API server; ktune.spec refuses a container with neither command nor image.
    broken = {"spec": {"trial": {"template": {"spec": {"containers": [{"name": "trainer"}]}}}}}
    cluster.kubectl("patch", "tuningjob", "broken-later", "-n", namespace, "--type=merge", "-p", json.dumps(broken))

    def invalid_and_stopped() -> dict | None:
        job = get(cluster, "tuningjob", namespace, "broken-later")
        invalid = condition(job, "Invalid")
        trial = trials_of(cluster, namespace, "broken-later").get(0, {}).get("status", {})
        return job if invalid and invalid["status"] == "True" and trial.get("state") == "Failed" else None

    job = wait_until(invalid_and_stopped, "the job to be Invalid and its running trial stopped", timeout=60)
    assert job["status"]["phase"] == "Failed"
    assert "needs a command" in condition(job, "Invalid")["message"]
    trial = trials_of(cluster, namespace, "broken-later")[0]["status"]
    assert trial["reason"] == "JobStopped" and "became invalid" in trial["message"]
    wait_until(lambda: not [pod for pod in get(cluster, "pods", namespace)["items"]
                            if pod["status"].get("phase") not in ("Succeeded", "Failed")],
               "the running pod to be gone", timeout=60)
    assert sorted(trials_of(cluster, namespace, "broken-later")) == [0]
