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
PROMETHEUS_LABEL_POD = "pod"  # added by prometheus-operator: one attempt's series, not an earlier attempt's
PROMETHEUS_WINDOW_SECONDS = 300
"""One Prometheus read covers at most this much of a trial's history (a few hundred KiB at a 1 s scrape
interval with the 64 metric names a trial keeps), so that catching up after a restart stays under the size bound."""
PROMETHEUS_INGEST_MARGIN_SECONDS = 60
"""A window that ended longer ago than this is complete: Prometheus has stored every scrape in it."""


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


@dataclass(frozen=True)
class TrialSeries:
    """One attempt's series in a Prometheus server, by the labels the chart's PodMonitor gives them."""

    namespace: str
    tuningjob: str
    trial: int
    pod: str
    started: float | None
    """When the pod was created (epoch seconds): an earlier pod's samples under the same name are older. None: read
    from one window back."""

    def selector(self) -> str:
        labels = {PROMETHEUS_LABEL_NAMESPACE: self.namespace, PROMETHEUS_LABEL_TUNINGJOB: self.tuningjob,
                  PROMETHEUS_LABEL_TRIAL: str(self.trial), PROMETHEUS_LABEL_POD: self.pod}
        matchers = [f'__name__=~"{TRIAL_METRIC_GAUGE}|{TRIAL_STEP_GAUGE}"']
        matchers += [f'{name}="{_promql_string(value)}"' for name, value in labels.items()]
        return "{" + ",".join(matchers) + "}"


@dataclass(frozen=True)
class PrometheusCursor:
    """Where the next Prometheus read of an attempt goes on from: after the newest sample seen (or skipped)."""

    after_ms: int


def query_prometheus(base_url: str, series: TrialSeries, cursor: object | None, timeout: float,
                     now: float | None = None) -> Scraped:
    """Every scrape of the attempt's pod that Prometheus holds after `cursor` (at most PROMETHEUS_WINDOW_SECONDS
    of them at a time), one reading per scrape, oldest first, each metric paired with the step of the same scrape.

    One instant query of a range vector, which gives the raw samples with their scrape timestamps (a
    `query_range` would resample them on a grid). Without a PrometheusCursor (an attempt's first read, or another
    source's cursor) it reads from the pod's creation. Nothing new is a MetricsError, so that a Prometheus that
    is not scraping the pod ends in MetricsUnavailable.
    """
    now_ms = math.floor((time.time() if now is None else now) * 1000)
    start = series.started if series.started is not None else now_ms / 1000 - PROMETHEUS_WINDOW_SECONDS
    after = cursor.after_ms if isinstance(cursor, PrometheusCursor) else math.floor(start * 1000) - 1
    end = min(now_ms, after + PROMETHEUS_WINDOW_SECONDS * 1000)
    query = f"{series.selector()}[{max(end - after, 1)}ms]"
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": end / 1000})
    readings, newest = _scrapes_after(_prometheus_answer(url, base_url, timeout), after, base_url)
    if newest is not None:
        return Scraped(readings, PrometheusCursor(newest))
    if end < now_ms - PROMETHEUS_INGEST_MARGIN_SECONDS * 1000:
        return Scraped([], PrometheusCursor(end))  # an old gap (the operator was away): go on after it
    if not isinstance(cursor, PrometheusCursor):
        raise MetricsError(f"Prometheus at {base_url} holds no {TRIAL_STEP_GAUGE} or {TRIAL_METRIC_GAUGE} samples "
                           f"of pod {series.namespace}/{series.pod} yet: is it scraping the trial pods (the "
                           "chart's metrics.trialPodMonitor), with the labels namespace, pod, tuningjob and trial?")
    raise MetricsError(f"Prometheus at {base_url} has no sample of pod {series.namespace}/{series.pod} newer than "
                       f"{after / 1000:.3f} (epoch seconds): it stopped scraping the pod")


def _prometheus_answer(url: str, base_url: str, timeout: float) -> object:
    try:
        return json.loads(read_bounded(url, timeout).decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as error:  # Prometheus explains a refusal in a JSON body
        text = error.read(4096).decode("utf-8", errors="replace")
        try:
            why = json.loads(text).get("error") or text
        except (json.JSONDecodeError, AttributeError):
            why = text
        raise MetricsError(f"Prometheus at {base_url} answered HTTP {error.code}: {str(why)[:300]}") from error
    except (OSError, urllib.error.URLError) as error:
        raise MetricsError(f"cannot query Prometheus at {base_url}: {error}") from error
    except json.JSONDecodeError as error:
        raise MetricsError(f"Prometheus at {base_url} answered with something that is not JSON") from error


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _scrapes_after(body: object, after: int, base_url: str) -> tuple[list[TrialMetrics], int | None]:
    """The readings of a range-vector answer newer than `after` (ms), by scrape timestamp, and the newest one."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise MetricsError(f"Prometheus at {base_url} refused the query: {str(error)[:300]}")
    steps: dict[int, float] = {}
    values: dict[int, dict[str, float]] = {}
    try:
        data = body["data"]
        if data["resultType"] != "matrix":
            raise ValueError(f"a {data['resultType']} instead of a range vector (matrix)")
        for found in data["result"]:
            labels = found["metric"]
            for timestamp, text in found["values"]:
                at, value = round(float(timestamp) * 1000), float(text)
                if at <= after:
                    continue
                if labels.get("__name__") == TRIAL_STEP_GAUGE:
                    steps[at] = value
                elif METRIC_LABEL in labels:
                    values.setdefault(at, {})[str(labels[METRIC_LABEL])] = value
    except (KeyError, TypeError, ValueError) as error:
        raise MetricsError(f"Prometheus at {base_url} answered with something that is not a query result "
                           f"({type(error).__name__}: {error})") from error
    scrapes = sorted(steps.keys() | values.keys())
    readings = [TrialMetrics(values.get(at, {}), _step(steps[at]) if math.isfinite(steps.get(at, math.nan)) else None)
                for at in scrapes]
    return readings, (scrapes[-1] if scrapes else None)


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
