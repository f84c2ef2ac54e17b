"""ktune.metrics against real Prometheus text (written by prometheus_client); reads through a Prometheus server
are in tests/telemetry (test_prometheus_answers.py, test_prometheus_range_read.py)."""

import math
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from ktune.local.processes import free_port
from ktune.metrics import (
    MAX_RESPONSE_BYTES,
    MetricsError,
    metrics_url,
    parse_exposition,
    parse_result,
    scrape,
)


def trial_registry(values: dict[str, float], step: int | None) -> CollectorRegistry:
    """The page a trainer serves, plus an unrelated counter that must be ignored."""
    registry = CollectorRegistry()
    gauge = Gauge("ktune_trial_metric", "trial metric", ["metric"], registry=registry)
    for name, value in values.items():
        gauge.labels(name).set(value)
    if step is not None:
        Gauge("ktune_trial_step", "step", registry=registry).set(step)
    Counter("requests", "unrelated", registry=registry).inc(7)
    return registry


def test_exposition_written_by_prometheus_client_gives_every_metric_and_the_step():
    text = generate_latest(trial_registry({"ndcg_at_10": 0.71, "eval_loss": 0.42}, step=3)).decode()
    metrics = parse_exposition(text)
    assert metrics.values == {"ndcg_at_10": 0.71, "eval_loss": 0.42}
    assert metrics.step == 3


def test_page_without_a_step_gauge_has_no_step_and_nan_survives():
    metrics = parse_exposition(generate_latest(trial_registry({"score": float("nan")}, step=None)).decode())
    assert metrics.step is None
    assert math.isnan(metrics.values["score"])


def test_label_values_with_quotes_and_backslashes_are_unescaped():
    text = generate_latest(trial_registry({'odd "name"\\x': 1.5}, step=1)).decode()
    assert parse_exposition(text).values == {'odd "name"\\x': 1.5}


def test_text_that_is_not_prometheus_exposition_is_a_metrics_error():
    with pytest.raises(MetricsError, match="not valid Prometheus text"):
        parse_exposition('ktune_trial_metric{metric="a"} not-a-number\n')


def test_scrape_reads_a_live_metrics_endpoint():
    registry = trial_registry({"score": 0.5}, step=2)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        metrics = scrape(metrics_url("127.0.0.1", server.server_port), timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert metrics.values == {"score": 0.5}
    assert metrics.step == 2


def test_scraping_a_port_nobody_serves_is_a_metrics_error():
    with pytest.raises(MetricsError, match="cannot scrape"):
        scrape(metrics_url("127.0.0.1", free_port()), timeout=2)


def test_result_json_gives_metric_numbers_including_nan():
    assert parse_result('{"ndcg_at_10": 0.8, "test_ndcg_at_10": 0.79, "epochs": 3}') == {
        "ndcg_at_10": 0.8, "test_ndcg_at_10": 0.79, "epochs": 3.0,
    }
    assert math.isnan(parse_result('{"score": NaN}')["score"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "result is empty"),
        ("   \n", "result is empty"),
        ("ndcg=0.8", "result is not JSON"),
        ('{"ndcg": 0.8', "result is not JSON"),
        ("[0.8, 0.9]", "must be a JSON object"),
        ('{"ndcg": "high"}', "metric 'ndcg' must be a number"),
        ('{"ndcg": true}', "metric 'ndcg' must be a number"),
        ('{"ndcg": {"value": 1}}', "metric 'ndcg' must be a number"),
    ],
)
def test_a_result_that_breaks_the_contract_is_a_clear_metrics_error(text: str, message: str):
    with pytest.raises(MetricsError, match=message):
        parse_result(text)


def test_a_step_beyond_64_bits_is_refused_naming_the_gauge():
    page = "ktune_trial_step 1e30\n"
    with pytest.raises(MetricsError, match=r"^ktune_trial_step must be a whole number from 0 to 2\^63-1"):
        parse_exposition(page)


def test_a_metrics_page_that_is_too_large_or_too_slow_is_refused_and_holds_no_worker(tmp_path):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            if self.path == "/big":
                self.wfile.write(b"# x\n" * (MAX_RESPONSE_BYTES // 4 + 10))
            else:  # a byte every 0.2 s: each read answers, the whole never ends in time
                for _ in range(50):
                    self.wfile.write(b"#")
                    self.wfile.flush()
                    time.sleep(0.2)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(MetricsError, match="larger than"):
            scrape(f"{base}/big", timeout=5.0)
        with pytest.raises(MetricsError, match="took longer than 1 s"):  # the page would take 10 s in all
            scrape(f"{base}/slow", timeout=1.0)
    finally:
        server.shutdown()
