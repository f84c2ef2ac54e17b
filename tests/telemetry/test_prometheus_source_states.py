"""Where a trial ends when its Prometheus answers badly: the operator's reconciler (in-process fake API) reading
through the real `query_prometheus` from a local server that answers as the test sets.

Bad answers for a while lose nothing (the steps are read once Prometheus answers again); bad answers for
longer than `metrics_unavailable_timeout_seconds` fail the attempt `MetricsUnavailable`, quoting the last
error. Nothing waits longer than the scrape timeout.
"""

import json
import threading

import pytest

from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from tests.operator.test_reconcile import NOW, Harness, job_body
from tests.telemetry.fake_prometheus import Answer, FakePrometheus, matrix, metric, step

CREATED = 1767225600.0  # the fake API's creationTimestamp of every pod, 2026-01-01T00:00:00Z
PRUNER = {"name": "threshold", "options": {"lower": 0.25}}


def harness_reading(fake: FakePrometheus, **settings: float) -> Harness:
    harness = Harness(job_body(max_trials=1, parallelism=1, pruner=PRUNER,
                               metricsSource={"type": "prometheus", "url": fake.base_url}))
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(allowed_prometheus_urls=fake.base_url,
                                                                         **settings))
    harness.tick()
    harness.cluster.run_pod("job-0-1")
    return harness


BAD = {
    "HTTP 500": (Answer(500, b"internal error"), "answered HTTP 500: internal error"),
    "garbage": (Answer(200, b"<html>login</html>"), "answered with something that is not JSON"),
}
# "Nothing scraped yet" is in test_prometheus_answers.py: here every pod is a year old, and an empty answer about
# the past is a gap the reader steps over (as after an operator restart), not silence.


@pytest.mark.parametrize("bad", BAD)
def test_bad_answers_for_a_while_lose_no_step_and_the_pruner_hears_each_once(fake_prometheus, bad):
    answer, _ = BAD[bad]
    fake_prometheus.queued = [answer, answer]
    fake_prometheus.answer_json(matrix(
        step((CREATED + 10, "1"), (CREATED + 11, "1"), (CREATED + 20, "2"), (CREATED + 30, "3")),
        metric("score", (CREATED + 10, "0.5"), (CREATED + 11, "0.55"), (CREATED + 20, "0.4"), (CREATED + 30, "0.2"))))
    harness = harness_reading(fake_prometheus, metrics_unavailable_timeout_seconds=60.0)
    for seconds in (1, 2, 3):
        harness.tick(NOW + seconds)
    trial = harness.cluster.trials["job-0"]["status"]
    assert trial["intermediate"] == [{"step": 1, "value": 0.5}, {"step": 2, "value": 0.4}, {"step": 3, "value": 0.2}]
    assert (trial["state"], trial["reason"]) == ("Pruned", "PrunedByPruner")  # at step 3, below 0.25
    assert len({ask["query"] for ask in fake_prometheus.asked}) == 1  # the same window asked again: a failed read
    # kept the cursor


@pytest.mark.parametrize("bad", BAD)
def test_bad_answers_past_the_timeout_fail_the_attempt_metrics_unavailable_quoting_the_last_error(
        fake_prometheus, bad):
    answer, message = BAD[bad]
    fake_prometheus.answer = answer
    harness = harness_reading(fake_prometheus, metrics_unavailable_timeout_seconds=30.0)
    harness.tick(NOW + 1)
    harness.tick(NOW + 30)
    assert harness.cluster.trials["job-0"]["status"]["state"] == "Running"
    harness.tick(NOW + 31)
    trial = harness.cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"]) == ("Failed", "MetricsUnavailable")
    assert message in trial["message"]
    assert "job-0-1" not in harness.cluster.pods  # deleted


def test_a_prometheus_answering_after_60_s_is_given_up_on_at_the_scrape_timeout_every_pass(fake_prometheus):
    fake_prometheus.answer = Answer(200, json.dumps(matrix()).encode(), release=threading.Event())
    harness = harness_reading(fake_prometheus, metrics_unavailable_timeout_seconds=30.0, scrape_timeout_seconds=1.0)
    harness.tick(NOW + 1)
    harness.tick(NOW + 31)
    trial = harness.cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"]) == ("Failed", "MetricsUnavailable")
    assert "timed out" in trial["message"]
