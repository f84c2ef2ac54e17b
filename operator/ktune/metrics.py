"""Reading a trial's metrics: its Prometheus `/metrics` page, a Prometheus server, or its final result.

A trainer serves one gauge `ktune_trial_metric{metric="<name>"}` per metric and
`ktune_trial_step` (the step those values belong to) while it trains, and writes its final
metrics as a compact JSON object (metric name -> number) when it ends. Both the local runner
and the operator read trials through this module, so the two backends see the same numbers.
"""

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from ktune.contract import TRIAL_METRIC_GAUGE, TRIAL_STEP_GAUGE

METRIC_LABEL = "metric"
# Labels a Prometheus server attaches to trial series. The chart's scrape config maps pod labels with
# `labelmap: __meta_kubernetes_pod_label_ktune_dev_(.+)` (ktune.dev/tuningjob -> tuningjob,
# ktune.dev/trial -> trial) and copies the namespace into `namespace`.
PROMETHEUS_LABEL_TUNINGJOB = "tuningjob"
PROMETHEUS_LABEL_TRIAL = "trial"
PROMETHEUS_LABEL_NAMESPACE = "namespace"


MAX_RESPONSE_BYTES = 1024 * 1024
"""A `/metrics` page or Prometheus answer larger than this is refused: a trial's page is a few KiB."""
MAX_STEP = 2**63 - 1
"""Steps are stored as 64-bit integers (Optuna, the Trial resource): a larger one is refused."""


class MetricsError(ValueError):
    """A trial's metrics could not be read or did not follow the trainer contract."""


@dataclass(frozen=True)
class TrialMetrics:
    """The metrics a trial reported at one moment: metric name -> value, and the step they belong to."""

    values: dict[str, float] = field(default_factory=dict)
    step: int | None = None


@dataclass(frozen=True)
class Scraped:
    """What one read of an attempt's metrics gave: the readings since the previous read, in step order (oldest
    first; a `/metrics` page gives one, a Prometheus range several, none when nothing is new), and where the next
    read of the same attempt goes on from. The cursor is the source's own (a Prometheus timestamp, a log offset):
    the trial driver keeps it per attempt and hands it back unread, None for an attempt's first read."""

    readings: list[TrialMetrics] = field(default_factory=list)
    cursor: object | None = None


def metrics_url(host: str, port: int) -> str:
    """The address of a trial's Prometheus page."""
    return f"http://{host}:{port}/metrics"


def parse_exposition(text: str) -> TrialMetrics:
    """The trial metrics in a Prometheus text exposition (other series on the page are ignored)."""
    values: dict[str, float] = {}
    step: int | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == TRIAL_METRIC_GAUGE and METRIC_LABEL in sample.labels:
                    values[sample.labels[METRIC_LABEL]] = float(sample.value)
                elif sample.name == TRIAL_STEP_GAUGE and math.isfinite(sample.value):
                    step = _step(sample.value)
    except MetricsError:
        raise  # the page parsed; a value broke the contract, and the error says which
    except ValueError as error:
        raise MetricsError(f"metrics page is not valid Prometheus text: {error}") from error
    return TrialMetrics(values=values, step=step)


def _step(value: float) -> int:
    if not 0 <= value <= MAX_STEP:
        raise MetricsError(f"{TRIAL_STEP_GAUGE} must be a whole number from 0 to 2^63-1 (got {value:g})")
    return int(value)


def read_bounded(url: str, timeout: float, max_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
    """GET `url` within `timeout` seconds in all and at most `max_bytes`: a server that trickles its answer or
    sends too much never holds a reconcile worker longer (OSError otherwise, as for a connection that fails)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read1(65536):
            size += len(chunk)
            if size > max_bytes:
                raise OSError(f"the answer is larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise OSError(f"the answer took longer than {timeout:g} s")
            chunks.append(chunk)
    return b"".join(chunks)


def scrape(url: str, timeout: float) -> TrialMetrics:
    """GET a trial's `/metrics` page and parse it; MetricsError when it cannot be reached or read."""
    try:
        text = read_bounded(url, timeout).decode("utf-8", errors="replace")
    except (OSError, urllib.error.URLError) as error:
        raise MetricsError(f"cannot scrape {url}: {error}") from error
    return parse_exposition(text)


def query_prometheus(
    base_url: str, tuningjob: str, trial: int, namespace: str | None, timeout: float
) -> TrialMetrics:
    """A trial's latest metrics from a Prometheus server, by one instant query over both gauges.

    When a trial restarted, several series may match one metric; the newest sample wins.
    """
    selectors = [
        f'__name__=~"{TRIAL_METRIC_GAUGE}|{TRIAL_STEP_GAUGE}"',
        f'{PROMETHEUS_LABEL_TUNINGJOB}="{_promql_string(tuningjob)}"',
        f'{PROMETHEUS_LABEL_TRIAL}="{trial}"',
    ]
    if namespace is not None:
        selectors.append(f'{PROMETHEUS_LABEL_NAMESPACE}="{_promql_string(namespace)}"')
    query = "{" + ",".join(selectors) + "}"
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        body = json.loads(read_bounded(url, timeout).decode("utf-8", errors="replace"))
    except (OSError, urllib.error.URLError) as error:
        raise MetricsError(f"cannot query Prometheus at {base_url}: {error}") from error
    except json.JSONDecodeError as error:
        raise MetricsError(f"Prometheus at {base_url} answered with something that is not JSON") from error
    return _metrics_from_query_result(body, base_url)


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _metrics_from_query_result(body: object, base_url: str) -> TrialMetrics:
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise MetricsError(f"Prometheus at {base_url} refused the query: {error}")
    newest: dict[str, tuple[float, float]] = {}  # metric -> (timestamp, value)
    step: tuple[float, float] | None = None
    for series in body.get("data", {}).get("result", []):
        labels = series.get("metric", {})
        timestamp, text = series["value"]
        sample = (float(timestamp), float(text))
        if labels.get("__name__") == TRIAL_STEP_GAUGE:
            if step is None or sample[0] >= step[0]:
                step = sample
        elif METRIC_LABEL in labels:
            name = labels[METRIC_LABEL]
            if name not in newest or sample[0] >= newest[name][0]:
                newest[name] = sample
    values = {name: value for name, (_, value) in newest.items()}
    step_value = _step(step[1]) if step is not None and math.isfinite(step[1]) else None
    return TrialMetrics(values=values, step=step_value)


def parse_result(text: str) -> dict[str, float]:
    """The trainer's final metrics: a JSON object of metric name -> number (NaN allowed, as JSON's `NaN`)."""
    if not text.strip():
        raise MetricsError("result is empty: the trainer must write a JSON object of metric name -> number")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MetricsError(f"result is not JSON ({error.msg} at line {error.lineno}): {text[:80]!r}") from error
    if not isinstance(data, dict):
        raise MetricsError(f"result must be a JSON object of metric name -> number, got {type(data).__name__}")
    metrics: dict[str, float] = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MetricsError(f"result: metric {name!r} must be a number, got {value!r}")
        metrics[name] = float(value)
    return metrics
