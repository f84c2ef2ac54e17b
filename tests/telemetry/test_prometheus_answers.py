"""`metricsSource: prometheus` against a local HTTP server that answers as Prometheus would, or badly.

The pairing of metric and step samples by scrape timestamp, the cursor, and every bad answer (down,
HTTP 500, garbage, too slow, nothing scraped yet) ending in a MetricsError that says what went wrong,
with nothing lost: the same cursor asked again gives the same steps.
"""

import json
import threading

import pytest

from ktune.local.processes import free_port
from ktune.metrics import (
    MAX_RESPONSE_BYTES,
    MetricsError,
    PrometheusCursor,
    Scraped,
    TrialMetrics,
    TrialSeries,
    query_prometheus,
)
from tests.telemetry.fake_prometheus import Answer, FakePrometheus, matrix, metric, step

SERIES = TrialSeries(namespace="ml", tuningjob="ranker", trial=3, pod="ranker-3-1", started=1000.0)
NOW = 1100.0


def read(fake_prometheus: FakePrometheus, cursor: object | None = None, timeout: float = 5.0) -> Scraped:
    return query_prometheus(fake_prometheus.base_url, SERIES, cursor, timeout, now=NOW)


def test_each_scrape_becomes_one_reading_pairing_metrics_with_the_step_of_the_same_timestamp(fake_prometheus):
    fake_prometheus.answer_json(matrix(
        step((1010.0, "1"), (1020.0, "2"), (1030.0, "3")),
        metric("ndcg_at_10", (1010.0, "0.1"), (1020.0, "0.2"), (1030.0, "0.3")),
        metric("eval_loss", (1010.0, "0.9"), (1030.0, "0.7")),  # not served at the second scrape
    ))
    scraped = read(fake_prometheus)
    assert scraped.readings == [
        TrialMetrics({"ndcg_at_10": 0.1, "eval_loss": 0.9}, step=1),
        TrialMetrics({"ndcg_at_10": 0.2}, step=2),
        TrialMetrics({"ndcg_at_10": 0.3, "eval_loss": 0.7}, step=3),
    ]
    assert scraped.cursor == PrometheusCursor(1030_000)
    query = fake_prometheus.asked[-1]
    assert query["path"] == "/api/v1/query"
    assert query["query"] == ('{__name__=~"ktune_trial_metric|ktune_trial_step",namespace="ml",tuningjob="ranker",'
                              'trial="3",pod="ranker-3-1"}[100001ms]')  # from just before the pod was created
    assert float(query["time"]) == NOW


def test_samples_up_to_the_cursor_are_not_read_again_and_a_sample_without_a_step_has_none(fake_prometheus):
    fake_prometheus.answer_json(matrix(  # Prometheus' range includes its start: the cursor's own sample comes back
        step((1030.0, "3"), (1040.0, "NaN")),
        metric("ndcg_at_10", (1030.0, "0.3"), (1040.0, "0.4"), (1050.0, "0.5")),
    ))
    scraped = read(fake_prometheus, cursor=PrometheusCursor(1030_000))
    assert scraped.readings == [TrialMetrics({"ndcg_at_10": 0.4}, step=None),
                                TrialMetrics({"ndcg_at_10": 0.5}, step=None)]
    assert scraped.cursor == PrometheusCursor(1050_000)
    assert fake_prometheus.asked[-1]["query"].endswith("[70000ms]")


def test_one_read_covers_at_most_a_window_and_an_old_empty_window_is_skipped(fake_prometheus):
    fake_prometheus.answer_json(matrix())
    far = TrialSeries(**{**SERIES.__dict__, "started": NOW - 3600})
    scraped = query_prometheus(fake_prometheus.base_url, far, None, 5.0, now=NOW)
    assert scraped.readings == [] and scraped.cursor == PrometheusCursor(int((NOW - 3600) * 1000) - 1 + 300_000)
    assert float(fake_prometheus.asked[-1]["time"]) * 1000 == scraped.cursor.after_ms


def test_another_sources_cursor_reads_from_the_pods_creation(fake_prometheus):
    fake_prometheus.answer_json(matrix(step((1010.0, "1")), metric("ndcg_at_10", (1010.0, "0.1"))))
    scraped = read(fake_prometheus, cursor=4096)  # a log offset, had the job's metricsSource been changed
    assert scraped.readings == [TrialMetrics({"ndcg_at_10": 0.1}, step=1)]
    assert fake_prometheus.asked[-1]["query"].endswith("[100001ms]")


@pytest.mark.parametrize(("cursor", "message"), [
    (None, "holds no ktune_trial_step or ktune_trial_metric samples of pod ml/ranker-3-1 yet: is it scraping"),
    (PrometheusCursor(1090_000), "no sample of pod ml/ranker-3-1 newer than 1090.000 .*: it stopped scraping"),
])
def test_nothing_scraped_is_a_metrics_error_so_the_silence_rule_applies(fake_prometheus, cursor, message):
    fake_prometheus.answer_json(matrix())
    with pytest.raises(MetricsError, match=message):
        read(fake_prometheus, cursor)


@pytest.mark.parametrize(("status", "body", "message"), [
    (500, b"internal error", "answered HTTP 500: internal error"),
    (503, json.dumps({"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}).encode(),
     "answered HTTP 503: TSDB not ready"),
    (200, b"<html>a proxy's login page</html>", "answered with something that is not JSON"),
    (200, json.dumps({"status": "error", "error": "parse error"}).encode(), "refused the query: parse error"),
    (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode(),
     "not a query result .*a vector instead of a range vector"),
    (200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}}).encode(),
     "not a query result .*KeyError"),
    (200, json.dumps(matrix(step((1010.0, "high")))).encode(), "not a query result .*ValueError"),
    (200, json.dumps(matrix(step((1010.0, "-1")))).encode(), "ktune_trial_step must be a whole number"),
])
def test_a_bad_answer_is_a_metrics_error_naming_what_came_back_and_the_same_cursor_reads_everything_next(
        fake_prometheus, status, body, message):
    fake_prometheus.answer = Answer(status, body)
    with pytest.raises(MetricsError, match=message):
        read(fake_prometheus, cursor=PrometheusCursor(1000_000))
    fake_prometheus.answer_json(matrix(step((1010.0, "1")), metric("ndcg_at_10", (1010.0, "0.1"))))
    again = read(fake_prometheus, cursor=PrometheusCursor(1000_000))
    assert again.readings == [TrialMetrics({"ndcg_at_10": 0.1}, step=1)]


def test_a_prometheus_that_answers_only_after_60_s_is_given_up_on_at_the_timeout(fake_prometheus):
    fake_prometheus.answer = Answer(200, json.dumps(matrix()).encode(), release=threading.Event())
    with pytest.raises(MetricsError, match=r"cannot query Prometheus at .*timed out"):
        read(fake_prometheus, timeout=1.0)


def test_a_prometheus_that_is_down_is_a_metrics_error():
    with pytest.raises(MetricsError, match=r"cannot query Prometheus at http://127\.0\.0\.1:.*refused"):
        query_prometheus(f"http://127.0.0.1:{free_port()}", SERIES, None, 2.0)


def test_an_answer_larger_than_the_bound_is_refused(fake_prometheus):
    fake_prometheus.answer = Answer(200, b" " * (MAX_RESPONSE_BYTES + 1))
    with pytest.raises(MetricsError, match="larger than"):
        read(fake_prometheus)
