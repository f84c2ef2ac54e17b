"""The operator's own Prometheus metrics, served on their own port and registry.

The operator calls a few methods from its reconcile loop:

    telemetry = Telemetry()
    telemetry.serve(9090)
    cluster = telemetry.counting_api_errors(cluster, ["create_pod", ...])  # counts what its methods raise
    with telemetry.time_reconcile():
        ...  # one reconcile pass
    telemetry.observe_job(namespace, name, engine.records, engine.best_trial, objective_metric)
    telemetry.forget_job(namespace, name)  # when the TuningJob is deleted

Job series are not long-lived label children: each `observe_job` stores an immutable snapshot of
the job, and a custom collector yields the series of the jobs it currently holds. A job's series
therefore disappear with `forget_job`, and an operator restarted from the Trial objects exposes the
same totals again (the counters are counts of finished trials, which never decrease).

Series and their labels (cardinality per TuningJob in brackets):
- `ktune_trials_total{namespace,tuningjob,state}` counter of finished trials, state in
  Succeeded|Pruned|Failed [3]
- `ktune_trials_running{namespace,tuningjob}` gauge [1]
- `ktune_tuningjob_best_value{namespace,tuningjob,metric}` gauge, single-objective jobs [1]
- `ktune_trial_value{namespace,tuningjob,trial,metric}` gauge, the final metrics of the latest
  `trial_series_cap` Succeeded trials [cap x metrics per trial]
- `ktune_trial_param{namespace,tuningjob,trial,param}` gauge, the numeric parameters (int, float,
  numeric choices) of those same trials [cap x parameters]
- `ktune_trial_duration_seconds{namespace,tuningjob,state}` histogram of finished trials'
  durations [3 x (buckets + 3)]
Operator-wide: `ktune_reconcile_duration_seconds` histogram, `ktune_api_errors_total{operation}`
(one series per Kubernetes call the operator names), `ktune_build_info{version}`, and the
`process_*` series of the operator process.
With the default cap of 20 and five metrics and four parameters per trial, one job costs about
230 series; a Prometheus holding a million series affords thousands of live jobs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ktune import __version__
from ktune.engine import TrialState

if TYPE_CHECKING:
    from ktune.engine import TrialRecord

DEFAULT_TRIAL_SERIES_CAP = 20
FINISHED_STATES = (TrialState.SUCCEEDED, TrialState.PRUNED, TrialState.FAILED)
# Trials run for minutes to hours; the small buckets keep short smoke-test trials readable.
TRIAL_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
RECONCILE_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class DurationHistogram:
    """Cumulative bucket counts (one per bound in TRIAL_DURATION_BUCKETS, then +Inf) and the sum."""

    cumulative_counts: tuple[int, ...]
    total_seconds: float

    @classmethod
    def of(cls, durations: Sequence[float]) -> DurationHistogram:
        bounds = (*TRIAL_DURATION_BUCKETS, math.inf)
        counts = tuple(sum(1 for d in durations if d <= bound) for bound in bounds)
        return cls(cumulative_counts=counts, total_seconds=float(sum(durations)))


@dataclass(frozen=True)
class JobSnapshot:
    """What the collector exposes for one TuningJob, as of its latest reconcile."""

    finished: Mapping[str, int]
    running: int
    best: tuple[str, float] | None
    trial_values: tuple[tuple[int, str, float], ...]
    trial_params: tuple[tuple[int, str, float], ...]
    durations: Mapping[str, DurationHistogram]


def job_snapshot(
    records: Sequence[TrialRecord], best: TrialRecord | None, objective_metric: str | None, cap: int
) -> JobSnapshot:
    """Reduce a job's trial records to the bounded set of numbers that the collector exposes."""
    states = [r.state for r in records]
    succeeded = [r for r in records if r.state == TrialState.SUCCEEDED]
    latest = sorted(succeeded, key=lambda r: r.number)[-cap:] if cap > 0 else []
    trial_values = tuple(
        (r.number, metric, float(value)) for r in latest for metric, value in final_metrics(r, objective_metric)
    )
    trial_params = tuple(
        (r.number, param, float(value)) for r in latest for param, value in sorted(r.params.items())
        if is_number(value)
    )
    best_value = objective_value(best, objective_metric) if best is not None else None
    durations = {
        state: DurationHistogram.of([
            r.finished_at - r.started_at for r in records
            if r.state == state and r.started_at is not None and r.finished_at is not None
        ])
        for state in map(str, FINISHED_STATES)
    }
    return JobSnapshot(
        finished={str(state): states.count(state) for state in FINISHED_STATES},
        running=states.count(TrialState.RUNNING),
        best=(objective_metric, best_value) if objective_metric and best_value is not None else None,
        trial_values=trial_values,
        trial_params=trial_params,
        durations=durations,
    )


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def objective_value(record: TrialRecord, objective_metric: str | None) -> float | None:
    """The trial's objective value: its first objective value, else the named metric."""
    if record.values:
        return float(record.values[0])
    if objective_metric is not None and is_number(record.metrics.get(objective_metric)):
        return float(record.metrics[objective_metric])
    return None


def final_metrics(record: TrialRecord, objective_metric: str | None) -> list[tuple[str, float]]:
    """The trial's finite final metrics, the objective included even when `metrics` lacks it."""
    metrics = {name: float(v) for name, v in record.metrics.items() if is_number(v)}
    value = objective_value(record, objective_metric)
    if objective_metric is not None and objective_metric not in metrics and value is not None:
        metrics[objective_metric] = value
    return sorted(metrics.items())


class JobCollector(Collector):
    """Yields the series of the jobs whose snapshots it holds (only live jobs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], JobSnapshot] = {}

    def put(self, namespace: str, name: str, snapshot: JobSnapshot) -> None:
        with self._lock:
            self._jobs[(namespace, name)] = snapshot

    def drop(self, namespace: str, name: str) -> None:
        with self._lock:
            self._jobs.pop((namespace, name), None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            jobs = sorted(self._jobs.items())
        trials = CounterMetricFamily(
            "ktune_trials", "Trials of a TuningJob that reached a final state.",
            labels=["namespace", "tuningjob", "state"])
        running = GaugeMetricFamily(
            "ktune_trials_running", "Trials of a TuningJob running now.", labels=["namespace", "tuningjob"])
        best = GaugeMetricFamily(
            "ktune_tuningjob_best_value", "Objective value of the job's best trial (single objective).",
            labels=["namespace", "tuningjob", "metric"])
        values = GaugeMetricFamily(
            "ktune_trial_value", "Final metrics of the latest succeeded trials of a job (capped per job).",
            labels=["namespace", "tuningjob", "trial", "metric"])
        params = GaugeMetricFamily(
            "ktune_trial_param", "Numeric parameters of the latest succeeded trials of a job (capped per job).",
            labels=["namespace", "tuningjob", "trial", "param"])
        durations = HistogramMetricFamily(
            "ktune_trial_duration_seconds", "Wall time of finished trials, from start to final state.",
            labels=["namespace", "tuningjob", "state"])
        bounds = [*(str(float(b)) for b in TRIAL_DURATION_BUCKETS), "+Inf"]
        for (namespace, name), job in jobs:
            for state, count in job.finished.items():
                trials.add_metric([namespace, name, state], count)
            running.add_metric([namespace, name], job.running)
            if job.best is not None:
                best.add_metric([namespace, name, job.best[0]], job.best[1])
            for number, metric, value in job.trial_values:
                values.add_metric([namespace, name, str(number), metric], value)
            for number, param, value in job.trial_params:
                params.add_metric([namespace, name, str(number), param], value)
            for state, histogram in job.durations.items():
                durations.add_metric(
                    [namespace, name, state], list(zip(bounds, histogram.cumulative_counts, strict=True)),
                    histogram.total_seconds)
        yield from (trials, running, best, values, params, durations)


class ApiErrorCounting:
    """A proxy whose named methods count the exceptions they raise; everything else passes through."""

    def __init__(self, client: Any, operations: tuple[str, ...], ignored: tuple[type[BaseException], ...],
                 count: Callable[[str], None]) -> None:
        self._client = client
        self._operations = operations
        self._ignored = ignored
        self._count = count

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._operations:
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except self._ignored:
                raise
            except Exception:
                self._count(name)
                raise

        return counted


class Telemetry:
    """The operator's metrics registry and the calls its reconcile loop makes."""

    def __init__(self, trial_series_cap: int = DEFAULT_TRIAL_SERIES_CAP) -> None:
        self.registry = CollectorRegistry()
        self.trial_series_cap = trial_series_cap
        self._jobs = JobCollector()
        self.registry.register(self._jobs)
        ProcessCollector(registry=self.registry)
        self._reconcile_seconds = Histogram(
            "ktune_reconcile_duration_seconds", "Time one reconcile pass of a TuningJob took.",
            buckets=RECONCILE_DURATION_BUCKETS, registry=self.registry)
        self._api_errors = Counter(
            "ktune_api_errors", "Kubernetes API calls that failed, by the operation the operator attempted.",
            ["operation"], registry=self.registry)
        Gauge("ktune_build_info", "The running ktune version (always 1).", ["version"],
              registry=self.registry).labels(__version__).set(1)
        self._server: WSGIServer | None = None

    def observe_job(
        self,
        namespace: str,
        name: str,
        records: Sequence[TrialRecord],
        best: TrialRecord | None,
        objective_metric: str | None,
    ) -> None:
        """Replace the job's series with the state of `records` (all its trials, any state)."""
        self._jobs.put(namespace, name, job_snapshot(records, best, objective_metric, self.trial_series_cap))

    def forget_job(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted job."""
        self._jobs.drop(namespace, name)

    @contextmanager
    def time_reconcile(self) -> Iterator[None]:
        """Time one reconcile pass (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._reconcile_seconds.observe(time.perf_counter() - start)

    def count_api_error(self, operation: str) -> None:
        """Count one failed Kubernetes API call; `operation` must come from a small fixed set of names."""
        self._api_errors.labels(operation).inc()

    def counting_api_errors(
        self, client: Any, operations: Iterable[str], ignored: tuple[type[BaseException], ...] = ()
    ) -> Any:
        """`client` with each method in `operations` counting the exceptions it raises (except `ignored`).

        The operations' series start at 0, so a dashboard shows "no errors" rather than "no data".
        """
        operations = tuple(operations)
        for operation in operations:
            self._api_errors.labels(operation)
        return ApiErrorCounting(client, operations, ignored, self.count_api_error)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve /metrics on `addr`:`port` from a daemon thread; returns the bound port (0 picks one)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        return server.server_port

    def close(self) -> None:
        """Stop serving (tests; the operator's server dies with its process)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
