"""Attempts that would otherwise wait forever end after a bounded time (fast, against the in-process fake API):
a pod whose metrics never answer fails with MetricsUnavailable, a pod stuck Terminating on a lost node is
force-deleted and fails with NodeLost. The same rules run on the real control plane in test_faults_on_cluster."""

import copy

from ktune import metrics
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from ktune.operator.trials import rfc3339
from tests.operator.test_reconcile import NOW, Harness, job_body


def silent(url: str, timeout: float) -> metrics.TrialMetrics:
    raise metrics.MetricsError(f"connection refused: {url}")


def harness_with(settings: OperatorSettings, retries: int = 0) -> Harness:
    harness = Harness(job_body(max_trials=1, parallelism=1, retries=retries), scrape=silent)
    harness.reconciler = JobReconciler(harness.cluster, settings, scrape=silent)
    return harness


def run_pod(harness: Harness, name: str) -> None:
    harness.cluster.pods[name]["status"] = {"phase": "Running", "podIP": "10.0.0.7"}


def test_a_trial_whose_metrics_never_answer_fails_with_metrics_unavailable_after_the_timeout():
    harness = harness_with(OperatorSettings(metrics_unavailable_timeout_seconds=30))
    harness.tick(NOW)
    run_pod(harness, "job-0-1")
    harness.tick(NOW + 1)
    harness.tick(NOW + 20)
    assert harness.trial_states() == {"job-0": "Running"}
    status = harness.tick(NOW + 32)
    trial = harness.cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"]) == ("Failed", "MetricsUnavailable")
    assert "did not answer for 31 s" in trial["message"] and "connection refused" in trial["message"]
    assert "job-0-1" in harness.cluster.deleted_pods
    assert status["phase"] == "Failed"  # maxTrials 1: the job is over once its only trial failed


def test_metrics_that_answer_again_reset_the_silence():
    answers = iter([silent, lambda url, timeout: metrics.TrialMetrics(values={"score": 0.1}, step=1)] + [silent] * 5)

    def flaky(url: str, timeout: float) -> metrics.TrialMetrics:
        return next(answers)(url, timeout)

    harness = Harness(job_body(max_trials=1, parallelism=1), scrape=flaky)
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(metrics_unavailable_timeout_seconds=30),
                                       scrape=flaky)
    harness.tick(NOW)
    run_pod(harness, "job-0-1")
    harness.tick(NOW + 1)   # silent from here
    harness.tick(NOW + 25)  # answers: the silence is over
    harness.tick(NOW + 40)  # silent again, for 0 s
    harness.tick(NOW + 60)  # silent for 20 s only
    assert harness.trial_states() == {"job-0": "Running"}


def test_a_pod_stuck_terminating_on_a_lost_node_is_force_deleted_and_its_trial_retried():
    harness = harness_with(OperatorSettings(lost_pod_timeout_seconds=60, metrics_unavailable_timeout_seconds=10_000),
                           retries=1)
    harness.tick(NOW)
    run_pod(harness, "job-0-1")
    harness.cluster.pods["job-0-1"]["metadata"]["deletionTimestamp"] = rfc3339(NOW + 30)
    harness.tick(NOW + 60)
    assert "job-0-1" in harness.cluster.pods, "still within its grace period plus the timeout"
    harness.tick(NOW + 95)
    assert "job-0-1" in harness.cluster.deleted_pods
    assert "job-0-2" in harness.cluster.pods
    assert harness.trial_states() == {"job-0": "Running"}
    assert any(reason == "TrialRetried" and "NodeLost" in message for _, reason, message in harness.cluster.events)



def test_a_finished_trials_pod_stuck_terminating_on_a_lost_node_is_force_deleted():
    harness = Harness(job_body(max_trials=2, parallelism=1), scrape=silent)
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(lost_pod_timeout_seconds=60), scrape=silent)
    forced: list[str] = []
    delete = harness.cluster.delete_pod

    def recording_delete(namespace: str, name: str, grace_seconds: int | None = None) -> None:
        if grace_seconds == 0:
            forced.append(name)
        delete(namespace, name, grace_seconds)

    harness.cluster.delete_pod = recording_delete
    harness.tick(NOW)
    run_pod(harness, "job-0-1")
    stuck = copy.deepcopy(harness.cluster.pods["job-0-1"])
    harness.tick(NOW + 1)
    harness.tick(NOW + 700)  # MetricsUnavailable after the default 600 s: the pod is deleted, trial 0 is over
    assert harness.trial_states()["job-0"] == "Failed"
    # The deletion never completes: the pod's node is gone.
    stuck["metadata"]["deletionTimestamp"] = rfc3339(NOW + 730)
    harness.cluster.pods["job-0-1"] = stuck
    harness.tick(NOW + 760)
    assert "job-0-1" in harness.cluster.pods and not forced
    harness.tick(NOW + 800)
    assert forced == ["job-0-1"] and "job-0-1" not in harness.cluster.pods
