"""`ktune.metrics.query_prometheus` against a real Prometheus scraping two trainer pages whose steps advance."""

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ktune.metrics import MetricsError, PrometheusCursor, TrialMetrics, TrialSeries, query_prometheus
from tests.cluster.waiting import wait_until
from tests.telemetry.prometheus_server import PrometheusServer


class Trainer(Collector):
    """A trainer's page whose step and metric change together: a scrape sees one step's values, never half."""

    def __init__(self, value_per_step: float) -> None:
        self.value_per_step = value_per_step
        self.step = 0
        self.lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            step = self.step
        metric = GaugeMetricFamily("ktune_trial_metric", "trial metric", labels=["metric"])
        metric.add_metric(["score"], self.value_per_step * step)
        yield metric
        yield GaugeMetricFamily("ktune_trial_step", "step", value=step)


@pytest.fixture
def trainers(tmp_path: Path) -> Iterator[tuple[PrometheusServer, dict[str, Trainer]]]:
    trainers = {"ranker-3-1": Trainer(0.1), "ranker-4-1": Trainer(-1.0)}
    servers = []
    for trainer in trainers.values():
        registry = CollectorRegistry()
        registry.register(trainer)
        servers.append(start_http_server(0, addr="127.0.0.1", registry=registry)[0])
    prometheus = PrometheusServer(tmp_path / "prometheus", [{"job_name": "trials", "static_configs": [
        {"targets": [f"127.0.0.1:{server.server_port}"],
         "labels": {"namespace": "ml", "tuningjob": "ranker", "trial": pod.split("-")[1], "pod": pod}}
        for pod, server in zip(trainers, servers, strict=True)]}])
    try:
        yield prometheus, trainers
    finally:
        prometheus.stop()
        for server in servers:
            server.shutdown()
            server.server_close()


def test_every_step_prometheus_scraped_is_read_once_in_order_with_its_own_values(trainers):
    prometheus, pages = trainers
    series = TrialSeries(namespace="ml", tuningjob="ranker", trial=3, pod="ranker-3-1", started=None)
    readings: list[TrialMetrics] = []
    cursor: object | None = None

    def advance_and_read() -> bool:
        nonlocal cursor
        for page in pages.values():
            with page.lock:
                page.step += 1
        try:
            scraped = query_prometheus(prometheus.base_url, series, cursor, timeout=10.0)
        except MetricsError:
            return False  # not scraped yet, or nothing new since the last read
        readings.extend(scraped.readings)
        cursor = scraped.cursor
        return len({reading.step for reading in readings}) >= 5

    wait_until(advance_and_read, "five steps of trial 3 read back from Prometheus", timeout=120, interval=0.7)
    assert isinstance(cursor, PrometheusCursor)
    held = prometheus.query(f'ktune_trial_step{{pod="ranker-3-1"}}[1h] @ {cursor.after_ms / 1000}')
    held_steps = [int(float(value)) for _, value in held[0]["values"]]
    assert [reading.step for reading in readings] == held_steps  # each scrape once, in order, none missed
    assert held_steps == sorted(held_steps)
    for reading in readings:
        assert reading.values == {"score": pytest.approx(0.1 * reading.step)}  # trial 4's values never mix in
