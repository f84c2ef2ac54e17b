"""A Trial object deleted by hand (#13 item 2): the job goes on with a placeholder instead of failing every pass."""

import json

import pytest

from ktune.operator.cluster import ApiError
from tests.operator.test_reconcile import Harness, job_body


def delete_trial(harness: Harness, name: str) -> None:
    """`kubectl delete trial`: the Trial goes, and the garbage collector takes its pods with it."""
    del harness.cluster.trials[name]
    for pod in [pod for pod in harness.cluster.pods if pod.startswith(f"{name}-")]:
        del harness.cluster.pods[pod]


def tick_until_settled(harness: Harness, passes: int = 6) -> dict:
    """Passes as the operator runs them: an API error ends a pass and the next one starts from the API."""
    status: dict = {}
    for _ in range(passes):
        try:
            status = harness.tick()
        except ApiError:
            continue
    return status


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "restarted"])
def test_a_trial_deleted_by_hand_counts_as_failed_trial_deleted_and_the_job_finishes(restart: bool):
    body = job_body(max_trials=4, parallelism=2)
    body["spec"]["budget"]["maxFailedTrials"] = 1  # a deleted trial must not count: the job would fail
    harness = Harness(body)
    harness.tick()
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.3}))
    harness.tick()
    assert sorted(harness.cluster.trials) == ["job-0", "job-1", "job-2"]
    delete_trial(harness, "job-1")  # running, with its pod
    if restart:
        harness.reconciler = harness.fresh_reconciler()
    tick_until_settled(harness)
    for name in ("job-2", "job-3"):
        harness.cluster.finish_pod(f"{name}-1", json.dumps({"score": 0.5}))
    status = tick_until_settled(harness)
    assert sorted(harness.cluster.trials) == ["job-0", "job-2", "job-3"]  # number 1 is not asked for again
    assert status["phase"] == "Succeeded", status
    assert status["trialCounts"]["failed"] == 1
    assert status["trialCounts"]["succeeded"] == 3
    warnings = [message for kind, reason, message in harness.cluster.events if reason == "TrialsDeleted"]
    assert warnings and "trials 1 were deleted" in warnings[0]


def test_a_deleted_last_trial_is_not_asked_for_again_once_the_status_counted_it():
    harness = Harness(job_body(max_trials=2, parallelism=1))
    harness.tick()
    delete_trial(harness, "job-0")
    harness.reconciler = harness.fresh_reconciler()
    tick_until_settled(harness, passes=2)
    assert sorted(harness.cluster.trials) == ["job-1"]
    harness.cluster.finish_pod("job-1-1", json.dumps({"score": 0.5}))
    status = tick_until_settled(harness, passes=2)
    assert (status["phase"], status["trialCounts"]["failed"]) == ("Succeeded", 1)
