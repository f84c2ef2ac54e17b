"""Trial metrics from the trial container's log, read through the API (`metricsSource: {type: logs}`).

Nothing is injected into the pod: the operator GETs `pods/log` (RBAC `get` on `pods/log`), which the API server
fetches from the pod's kubelet, and hands the lines to `ktune.log_metrics.LogParser`. Each read asks for the lines
since the last one read: the cursor is the newest line's timestamp (the kubelet's, with nanoseconds) and how many
lines carried exactly that timestamp, because `sinceTime` reaches the API server in whole seconds only, so a read
starts at the second of the last line and skips what was already read. A read is bounded (`limitBytes`): what it
cut off is read next time; a line too long to ever fit is skipped and counted, with the lines after it in the same
second (the API cannot start a read inside a second).

When the container has ended, the trainer's final metrics are its termination message when it wrote one, else the
last value of each name in the log's last lines (`final_result`), read once the pod is Succeeded, so that lines
printed right before the exit count.
"""

import datetime
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

from ktune.log_metrics import MAX_LINE_CHARS, LogParser
from ktune.metrics import MetricsError, Scraped
from ktune.operator.cluster import ApiError, Cluster
from ktune.spec import TuningJob

log = logging.getLogger(__name__)

READ_LIMIT_BYTES = 1024 * 1024
"""At most this much log per read (the API's limitBytes); the rest comes at the next reads."""
FINAL_TAIL_LINES = (1000, 100)
"""The final metrics come from the log's last lines: the first of these counts whose lines fit in READ_LIMIT_BYTES."""
LOG_WARNING_REASON = "MetricsLogIgnored"

Position = tuple[tuple[str, int], int]
"""((the newest line's second as YYYY-MM-DDTHH:MM:SS, its nanoseconds), lines read with exactly that timestamp)."""


@dataclass(frozen=True)
class LogCursor:
    """Where an attempt's next log read goes on: the parser (with the step and names seen) and the position."""

    parser: LogParser
    position: Position | None = None


class PodLogMetrics:
    """Reads the metrics of one job's trials from their pods' logs; warns (a Warning Event on the Trial) when lines
    or names were ignored."""

    def __init__(self, cluster: Cluster, job: TuningJob, namespace: str, timeout: float) -> None:
        self.cluster = cluster
        self.job = job
        self.namespace = namespace
        self.timeout = timeout

    def parser(self) -> LogParser:
        source = self.job.spec.metrics_source
        return LogParser(format=source.format, filter=source.filter, step_metric=source.step_metric,
                         always=frozenset(self.job.spec.recorded_metrics))

    def read(self, number: int, pod: dict[str, Any], cursor: object | None) -> Scraped:
        """The readings in the lines logged since `cursor` (None: from the start)."""
        state = cursor if isinstance(cursor, LogCursor) else LogCursor(self.parser())
        query = {"container": _trainer(pod), "timestamps": "true", "limitBytes": str(READ_LIMIT_BYTES)}
        if state.position is not None:
            query["sinceTime"] = state.position[0][0] + "Z"
        text = self._get(pod, query)
        lines, position = new_lines(text, state.position, state.parser,
                                    cut=len(text.encode("utf-8", errors="replace")) >= READ_LIMIT_BYTES)
        readings = state.parser.feed(lines)
        self._warn(pod, state.parser)
        return Scraped(readings, LogCursor(state.parser, position))

    def final_result(self, pod: dict[str, Any]) -> str | None:
        """The last value of each name in the log's last lines, as a result (a JSON object); None when the log
        names no metric or cannot be read (the values read while the trial ran stand)."""
        for tail in FINAL_TAIL_LINES:
            query = {"container": _trainer(pod), "timestamps": "true", "tailLines": str(tail),
                     "limitBytes": str(READ_LIMIT_BYTES)}
            try:
                text = self._get(pod, query)
            except MetricsError as error:
                log.warning("%s/%s: final metrics not read from the log: %s", self.namespace,
                            pod["metadata"]["name"], error)
                return None
            if len(text.encode("utf-8", errors="replace")) < READ_LIMIT_BYTES:
                break
        else:
            return None
        parser = self.parser()
        last: dict[str, float] = {}
        for reading in parser.feed(new_lines(text, None, parser, cut=False)[0]):
            last.update(reading.values)
        return json.dumps(last) if last else None

    def _get(self, pod: Mapping[str, Any], query: Mapping[str, str]) -> str:
        name = pod["metadata"]["name"]
        try:
            return self.cluster.read_pod_log(self.namespace, name, query, self.timeout)
        except (ApiError, OSError, urllib3.exceptions.HTTPError) as error:
            log.warning("%s/%s: cannot read pods/log: %s", self.namespace, name, error)
            raise MetricsError(f"cannot read the log of pod {name}: {error}") from error

    def _warn(self, pod: Mapping[str, Any], parser: LogParser) -> None:
        owner = next((ref for ref in pod["metadata"].get("ownerReferences") or [] if ref.get("controller")), None)
        for warning in parser.warnings():
            log.warning("%s/%s: %s", self.namespace, pod["metadata"]["name"], warning)
            if owner is not None:
                regarding = {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                             "metadata": {"name": owner["name"], "namespace": self.namespace, "uid": owner["uid"]}}
                self.cluster.emit_event(regarding, "Warning", LOG_WARNING_REASON,
                                        f"pod {pod['metadata']['name']}: {warning}")


def _trainer(pod: Mapping[str, Any]) -> str:
    """The trainer is the template's first container."""
    return str(pod["spec"]["containers"][0]["name"])


def timestamp_key(stamp: str) -> tuple[str, int] | None:
    """An RFC 3339 UTC timestamp as (its second, its nanoseconds), comparable; None when it is none."""
    if len(stamp) < 20 or stamp[10] != "T" or not stamp.endswith("Z"):
        return None
    fraction = stamp[19:-1]
    if fraction and not (fraction[0] == "." and fraction[1:].isdigit()):
        return None
    return stamp[:19], int((fraction[1:] + "000000000")[:9]) if fraction else 0


def new_lines(text: str, position: Position | None, parser: LogParser, *,
              cut: bool) -> tuple[list[str], Position | None]:
    """The lines of a timestamped log answer after `position`, without their timestamps, and the new position.

    A last line without its newline is left for the next read (it may still be written, or the answer was `cut` at
    its limit), unless it is already longer than any metrics line: then it is skipped and counted (`parser`)."""
    pieces = text.split("\n")
    partial = pieces.pop()
    lines: list[str] = []
    at_last = 0
    for piece in pieces:
        stamp, _, line = piece.partition(" ")
        key = timestamp_key(stamp)
        if key is None:
            continue
        if position is None or key > position[0]:
            position, at_last = (key, 1), 1
        else:
            if key < position[0]:
                continue
            at_last += 1
            if at_last <= position[1]:
                continue
            position = (key, position[1] + 1)
        lines.append(line)
    key = timestamp_key(partial.partition(" ")[0])
    if key is not None and (len(partial) > MAX_LINE_CHARS or (cut and not lines)):
        # Too long to ever arrive whole: skip it, and the rest of its second (sinceTime has no finer grain).
        parser.long_line()
        position = ((_next_second(key[0]), 0), 0)
    return lines, position


def _next_second(second: str) -> str:
    moment = datetime.datetime.strptime(second, "%Y-%m-%dT%H:%M:%S") + datetime.timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")
