"""The ktune trainer contract, importable by any training script.

A trial honours the contract when it
1. serves `/metrics` on ``KTUNE_METRICS_HOST:KTUNE_METRICS_PORT`` with one gauge
   ``ktune_trial_metric{metric="<name>"}`` per metric and ``ktune_trial_step``, updated at each
   evaluation, and
2. writes its final metrics as one compact JSON object ``{"<name>": number}`` to the path in
   ``KTUNE_RESULT_PATH``, or to ``/dev/termination-log`` inside a Kubernetes pod.

Usage from any script::

    reporter = TrialReporter.from_env()
    reporter.start_server()
    ...
    reporter.report(step=epoch, metrics={"ndcg_at_10": 0.71, "eval_loss": 0.42})
    ...
    reporter.write_result({"ndcg_at_10": 0.74, "test_ndcg_at_10": 0.73})

The names below must equal those in ``ktune.contract``; this module repeats them so that a
trainer image needs nothing from the operator's package (a test checks they agree).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server

ENV_PARAM_PREFIX = "KTUNE_PARAM_"
ENV_METRICS_HOST = "KTUNE_METRICS_HOST"
ENV_METRICS_PORT = "KTUNE_METRICS_PORT"
ENV_RESULT_PATH = "KTUNE_RESULT_PATH"
TRIAL_METRIC_GAUGE = "ktune_trial_metric"
TRIAL_STEP_GAUGE = "ktune_trial_step"
DEFAULT_METRICS_HOST = "0.0.0.0"
DEFAULT_METRICS_PORT = 9100
TERMINATION_LOG = "/dev/termination-log"
# Kubernetes keeps at most 4 KiB of a container's termination message.
RESULT_LIMIT_BYTES = 4096


class ReportError(ValueError):
    """The contract cannot be honoured as configured (a bad port, a result too large)."""


def param_env_name(parameter: str) -> str:
    """The environment variable that carries one parameter: ``KTUNE_PARAM_<NAME>`` upper-cased."""
    return ENV_PARAM_PREFIX + parameter.upper()


def result_json(metrics: Mapping[str, float]) -> str:
    """The compact final-result JSON; non-finite values are dropped (JSON has no NaN)."""
    clean = {name: _json_number(value) for name, value in metrics.items() if math.isfinite(float(value))}
    text = json.dumps(clean, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > RESULT_LIMIT_BYTES:
        raise ReportError(
            f"final result is {len(text.encode())} bytes; Kubernetes keeps only {RESULT_LIMIT_BYTES}: "
            "report fewer metrics"
        )
    return text


def _json_number(value: float) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else round(number, 6)


@dataclass
class TrialReporter:
    """Serves a trial's metrics while it trains and writes its final result when it ends."""

    host: str = DEFAULT_METRICS_HOST
    port: int = DEFAULT_METRICS_PORT
    result_path: str | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # An own registry: the default one would also expose process/GC series of whoever imports us.
        self._metric = Gauge(TRIAL_METRIC_GAUGE, "Latest value of a trial metric", ["metric"], registry=self.registry)
        self._step = Gauge(TRIAL_STEP_GAUGE, "Step the latest metric values belong to", registry=self.registry)
        self._server: WSGIServer | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrialReporter:
        """Reads ``KTUNE_METRICS_HOST``, ``KTUNE_METRICS_PORT`` and ``KTUNE_RESULT_PATH``."""
        env = os.environ if environ is None else environ
        raw_port = env.get(ENV_METRICS_PORT, "").strip() or str(DEFAULT_METRICS_PORT)
        try:
            port = int(raw_port)
        except ValueError:
            raise ReportError(f"{ENV_METRICS_PORT}={raw_port!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise ReportError(f"{ENV_METRICS_PORT}={port} is outside 0..65535")
        host = env.get(ENV_METRICS_HOST, "").strip() or DEFAULT_METRICS_HOST
        result_path = env.get(ENV_RESULT_PATH, "").strip() or None
        return cls(host=host, port=port, result_path=result_path)

    def start_server(self) -> bool:
        """Starts serving /metrics in a daemon thread; False (with a warning) when the port is taken.

        A trial that cannot serve metrics can still finish and deliver its final result, so a
        busy port is not fatal.
        """
        try:
            self._server, _thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as error:
            print(f"warning: cannot serve metrics on {self.host}:{self.port}: {error}", file=sys.stderr)
            return False
        return True

    def stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """Publishes the metrics of one evaluation; `step` must grow from one call to the next."""
        for name, value in metrics.items():
            self._metric.labels(metric=name).set(float(value))
        self._step.set(step)

    def write_result(self, metrics: Mapping[str, float]) -> str:
        """Writes the final result where the runner reads it and returns the JSON text.

        ``KTUNE_RESULT_PATH`` wins; otherwise ``/dev/termination-log`` when it exists (the kubelet
        creates it in a pod); on a laptop without either, nothing is written.
        """
        text = result_json(metrics)
        target = self.result_path
        if target is None and Path(TERMINATION_LOG).exists():
            target = TERMINATION_LOG
        if target is not None:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return text
