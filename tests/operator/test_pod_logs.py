"""The operator's log reader (ktune.operator.pod_logs) against a fake `pods/log` that answers as the kubelet does:
second-grained sinceTime, limitBytes, tailLines. The real path (API server -> node agent) is tested on the cluster."""

import json
from collections.abc import Mapping
from typing import Any

import pytest

from ktune.algorithms import load_tuningjob
from ktune.log_metrics import MAX_LINE_CHARS
from ktune.metrics import MetricsError, TrialMetrics
from ktune.operator.cluster import ApiError
from ktune.operator.pod_logs import READ_LIMIT_BYTES, PodLogMetrics
from tests.cluster.kubelet_logs import select_lines
from tests.log_trainer import log_job

POD = {"metadata": {"name": "logs-0-1", "ownerReferences": [
    {"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial", "name": "logs-0", "uid": "u-1", "controller": True}]},
       "spec": {"containers": [{"name": "trainer"}]}}


class FakeLogs:
    """A pod log as the kubelet keeps it (timestamped lines), answered through `select_lines` as the node agent."""

    def __init__(self) -> None:
        self.stamped = b""
        self.queries: list[Mapping[str, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.refuse: ApiError | None = None

    def print(self, second: int, nanos: int, line: str) -> None:
        self.stamped += f"2026-01-01T10:00:{second:02d}.{nanos:09d}Z {line}\n".encode()

    def read_pod_log(self, namespace: str, name: str, query: Mapping[str, str], timeout: float) -> str:
        self.queries.append(dict(query))
        if self.refuse is not None:
            raise self.refuse
        return select_lines(self.stamped, query).decode()

    def emit_event(self, regarding: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((regarding["metadata"]["name"], reason, message))


def reader(fake: FakeLogs) -> PodLogMetrics:
    return PodLogMetrics(fake, load_tuningjob(log_job("logs")), "ns", timeout=2.0)  # type: ignore[arg-type]


def test_each_line_is_read_once_even_when_several_share_a_second_or_a_timestamp() -> None:
    fake = FakeLogs()
    logs = reader(fake)
    fake.print(1, 5, "epoch=1 ndcg_at_10=0.1")
    fake.print(1, 5, "epoch=2 ndcg_at_10=0.2")  # the same timestamp to the nanosecond
    first = logs.read(0, POD, None)
    assert first.readings == [TrialMetrics({"ndcg_at_10": 0.1}, 1), TrialMetrics({"ndcg_at_10": 0.2}, 2)]
    fake.print(1, 5, "epoch=3 ndcg_at_10=0.3")
    fake.print(1, 7, "epoch=4 ndcg_at_10=0.4")
    second = logs.read(0, POD, first.cursor)
    assert fake.queries[-1]["sinceTime"] == "2026-01-01T10:00:01Z"
    assert second.readings == [TrialMetrics({"ndcg_at_10": 0.3}, 3), TrialMetrics({"ndcg_at_10": 0.4}, 4)]
    assert logs.read(0, POD, second.cursor).readings == []


def test_a_line_still_being_written_waits_for_its_newline() -> None:
    fake = FakeLogs()
    logs = reader(fake)
    fake.stamped = b"2026-01-01T10:00:01.000000000Z epoch=1 ndcg_at_10=0.1\n2026-01-01T10:00:02.000000000Z epoch=2 nd"
    first = logs.read(0, POD, None)
    assert [reading.step for reading in first.readings] == [1]
    fake.stamped += b"cg_at_10=0.2\n"
    assert logs.read(0, POD, first.cursor).readings == [TrialMetrics({"ndcg_at_10": 0.2}, 2)]


def test_a_line_longer_than_a_read_is_skipped_counted_and_warned_about_once() -> None:
    fake = FakeLogs()
    logs = reader(fake)
    fake.print(1, 0, "epoch=1 ndcg_at_10=0.1")
    fake.print(2, 0, "noise=" + "9" * (READ_LIMIT_BYTES + 10))
    fake.print(3, 0, "epoch=2 ndcg_at_10=0.2")
    cursor = None
    steps = []
    for _ in range(4):
        scraped = logs.read(0, POD, cursor)
        cursor = scraped.cursor
        steps += [reading.step for reading in scraped.readings]
    assert steps == [1, 2]
    assert [reason for _, reason, _ in fake.events] == ["MetricsLogIgnored"]
    assert fake.events[0][0] == "logs-0"  # on the Trial
    assert f"longer than {MAX_LINE_CHARS}" in fake.events[0][2]


def test_the_final_result_is_the_last_value_of_each_name_and_refusals_are_metrics_errors() -> None:
    fake = FakeLogs()
    logs = reader(fake)
    fake.print(1, 0, "epoch=1 ndcg_at_10=0.1 loss=0.9")
    fake.print(2, 0, "epoch=2 ndcg_at_10=0.2")
    assert json.loads(logs.final_result(POD) or "") == {"ndcg_at_10": 0.2, "loss": 0.9}
    assert fake.queries[-1]["tailLines"] == "1000"
    fake.refuse = ApiError(403, 'pods "logs-0-1" is forbidden: cannot get resource "pods/log"')
    with pytest.raises(MetricsError, match=r"cannot read the log of pod logs-0-1: .*forbidden"):
        logs.read(0, POD, None)
    assert logs.final_result(POD) is None
