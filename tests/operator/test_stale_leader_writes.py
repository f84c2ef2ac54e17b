"""What a stale leader may still send is refused (#13 item 7): writes past its leader gate never leave the process,
and a Trial status write carries the resourceVersion its writer last saw, so it cannot set back a Trial that the
new leader wrote since."""

import json
from typing import Any

import pytest

from ktune.operator.cluster import ApiError, Conflict, KubeCluster
from ktune.operator.election import LeaderGate, NotLeading
from tests.operator.test_reconcile import Harness, job_body


class Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def read(self) -> bytes:
        return self.body

    def getheader(self, name: str) -> str | None:
        return None


class RecordingClient:
    """Stands in for kubernetes.client.ApiClient: records what was sent (method, path, body, timeout)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, Any, float]] = []

    def param_serialize(self, method: str, path: str, body: Any = None,
                        **_: Any) -> tuple[str, str, dict[str, str], Any, None]:
        return method, path, {}, body, None

    def call_api(self, method: str, url: str, headers: dict[str, str], body: Any, *,
                 _request_timeout: float, **_: Any) -> Answer:
        self.sent.append((method, url, body, _request_timeout))
        return self.answer


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_past_the_gate_no_write_is_sent_but_reads_are_and_a_write_gets_at_most_the_time_left_as_its_timeout():
    client, clock = RecordingClient(Answer(200, b'{"items": []}')), Clock()
    api = KubeCluster(client)  # type: ignore[arg-type]
    gate = api.gate = LeaderGate(clock)
    gate.extend(clock.now + 2.5)
    api.delete_pod("ns", "job-0-1")
    assert client.sent[-1][:2] == ("DELETE", "/api/v1/namespaces/ns/pods/job-0-1")
    assert client.sent[-1][3] == 2.5  # not the usual 30 s: the request must not outlive the leadership
    clock.now += 2.5
    for write in (lambda: api.delete_pod("ns", "job-0-1"),
                  lambda: api.create_pod("ns", {"metadata": {"name": "job-0-2"}}),
                  lambda: api.patch_trial_status("ns", "job-0", {"state": "Failed"}, "7"),
                  lambda: api.patch_job_status("ns", "job", {"phase": "Failed"}),
                  lambda: api.create_trial("ns", {"metadata": {"name": "job-1"}}),
                  lambda: api.emit_event({"apiVersion": "v1", "kind": "Pod", "metadata": {
                      "name": "p", "namespace": "ns", "uid": "u"}}, "Normal", "Why", "what")):
        with pytest.raises(NotLeading, match="refused: this operator's leader Lease may have passed"):
            write()
    assert len(client.sent) == 1
    assert api.list_trials("ns", "job") == []  # reads go on: they change nothing
    assert client.sent[-1][0] == "GET" and client.sent[-1][3] == 30.0


def test_a_trial_status_write_names_the_version_it_was_based_on_and_a_409_is_a_conflict():
    client = RecordingClient(Answer(409, b'{"message": "the object has been modified"}'))
    api = KubeCluster(client)  # type: ignore[arg-type]
    with pytest.raises(Conflict) as refused:
        api.patch_trial_status("ns", "job-0", {"state": "Running"}, "41")
    assert refused.value.status == 409 and isinstance(refused.value, ApiError)
    method, path, body, _ = client.sent[-1]
    assert (method, path) == ("PATCH", "/apis/ktune.dev/v1alpha1/namespaces/ns/trials/job-0/status")
    assert body == {"metadata": {"resourceVersion": "41"}, "status": {"state": "Running"}}


def test_a_stale_leader_cannot_set_back_a_trial_the_new_leader_finished_and_rebuilds_instead():
    harness = Harness(job_body(max_trials=3, parallelism=2))
    old = harness.reconciler
    harness.tick()  # the old leader starts trials 0 and 1
    harness.reconciler = harness.fresh_reconciler()  # the new leader takes over
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    harness.tick()
    assert harness.trial_states()["job-0"] == "Succeeded"
    assert "job-0-1" not in harness.cluster.pods  # recorded, then its pod deleted
    written = json.loads(json.dumps(harness.cluster.trials["job-0"]))

    # The old leader, still holding trial 0 as running, finds its pod gone and would fail the trial.
    harness.reconciler = old
    with pytest.raises(Conflict):
        harness.tick()
    assert harness.cluster.trials["job-0"] == written
    assert old.state is None  # it rebuilds from the API at its next pass

    harness.tick()  # rebuilt: trial 0 stays Succeeded
    assert harness.cluster.trials["job-0"]["status"] == written["status"]
