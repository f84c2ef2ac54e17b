"""Katib's metrics collectors as ktune metric sources, for `ktune import-katib`.

Katib's default collector, StdOut, is a sidecar that reads the trainer's output for `name=value` lines (or what its
`metricsFormat` filters match); ktune reads the same lines from the container's log through the API, with nothing
injected: `metricsSource: {type: logs}`. A collector that reads a file inside the container (File, TensorFlowEvent)
cannot be carried over without a sidecar: that is refused with what to change instead.
"""

from collections.abc import Mapping
from typing import Any

from ktune.contract import DEFAULT_STEP_METRIC
from ktune.spec.fields import filter_problem

_IN_A_FILE = ("ktune reads no file inside the trial's container (that takes a sidecar): print the same lines to "
              "stdout instead and set spec.metricsSource: {type: logs<json>}, or write the final metrics as a JSON "
              "object to the termination message ($KTUNE_RESULT_PATH), then remove metricsCollectorSpec")


def metrics_source(spec: Mapping[str, Any], notes: list[str], refused: list[str]) -> dict[str, Any] | None:
    """The TuningJob's metricsSource for the Experiment's collector (None: leave it out, the default direct scrape);
    what changes in meaning goes to `notes`, what cannot be carried over to `refused`."""
    collector_spec = spec.get("metricsCollectorSpec") or {}
    kind = (collector_spec.get("collector") or {}).get("kind") or "StdOut"
    source = collector_spec.get("source") or {}
    formats = list((source.get("filter") or {}).get("metricsFormat") or [])
    file_path = source.get("fileSystemPath") or {}
    if kind == "StdOut":
        return _log_source(formats, notes)
    if kind in ("File", "TensorFlowEvent"):
        json_lines = ", format: json" if str(file_path.get("format", "")).upper() == "JSON" else ""
        where = f" ({file_path['path']})" if file_path.get("path") else ""
        refused.append(f"metricsCollectorSpec.collector {kind}{where}: "
                       + _IN_A_FILE.replace("<json>", json_lines))
        return None
    if kind == "PrometheusMetric":
        notes.append("metricsCollectorSpec.collector PrometheusMetric: ktune scrapes /metrics for the gauges "
                     "ktune_trial_metric{metric=\"<name>\"} and ktune_trial_step on $KTUNE_METRICS_PORT, not Katib's "
                     "metric names: change what the trainer serves")
        return None
    if kind == "None":
        notes.append("metricsCollectorSpec.collector None: the trainer must write its final metrics as a JSON object "
                     "to the termination message ($KTUNE_RESULT_PATH)")
        return None
    notes.append(f"metricsCollectorSpec.collector {kind} dropped: no ktune equivalent; print name=value lines to "
                 "stdout and set spec.metricsSource: {type: logs}")
    return None


def _log_source(formats: list[Any], notes: list[str]) -> dict[str, Any]:
    source: dict[str, Any] = {"type": "logs", "stepMetric": DEFAULT_STEP_METRIC}
    notes.append(f"Katib's StdOut collector becomes spec.metricsSource type logs (the log is read through the API, "
                 f"no sidecar). Katib orders values by time; ktune's pruner needs a step: the trainer prints it as "
                 f"`{DEFAULT_STEP_METRIC}=N` on its metrics lines, or set spec.metricsSource.stepMetric to the name it "
                 f"prints (e.g. epoch)")
    if not formats:
        return source
    problem = filter_problem(formats[0])
    if problem:
        notes.append(f"metricsFormat filter {formats[0]!r} dropped: {problem}; Katib's default filter is used")
    else:
        source["filter"] = formats[0]
    if len(formats) > 1:
        notes.append(f"metricsFormat filters after the first dropped ({', '.join(repr(f) for f in formats[1:])}): "
                     "ktune reads one filter")
    return source
